/**
 * Reproduction of chaos finding 2 (docs/chaos-findings.md): the fence timer fires a fraction
 * of a millisecond early (as Node's setTimeout does; this clock makes it exactly 1 ms), finds
 * the lease still valid, returns and never looks again. When the next heartbeat is slow but
 * succeeds, the lease expires with `fenced` still false: the abort signal is not sent, and a
 * task adopted in that window is never started (startRun refuses on the lease, and only an
 * unfence restarts runs).
 *
 *   npx tsx test/chaos/repro/early-fence-timer.ts     (exit code 1 while the defect is present)
 *   EARLY_MS=-2 npx tsx test/chaos/repro/early-fence-timer.ts   (timers 2 ms late: exit 0)
 */
import { systemClock, type Clock } from '../../../lib/clock.js';
import { MemoryStore } from '../../../lib/store/memory-store.js';
import type { Store } from '../../../lib/store/store.js';
import type { TaskContext } from '../../../lib/tasks.js';
import { Worker } from '../../../lib/worker.js';

const earlyMs = Number(process.env["EARLY_MS"] ?? 1);
const earlyClock: Clock = { now: () => systemClock.now(), setTimer: (ms, fn) => systemClock.setTimer(Math.max(0, ms - earlyMs), fn) };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const memory = new MemoryStore();
let slowHeartbeatMs = 0;
// The store answers correctly, only late: heartbeats and claims that land at once but whose
// replies take long (what a loaded DynamoDB Local does).
const store = new Proxy(memory, {
  get(target, key, receiver) {
    const value = Reflect.get(target, key, receiver) as unknown;
    if (key === 'heartbeat' || key === 'moveTask') return async (...args: unknown[]) => {
      const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      if (slowHeartbeatMs) await sleep(key === 'heartbeat' ? slowHeartbeatMs : slowHeartbeatMs / 2);
      return out;
    };
    return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
  },
}) as Store;

const aborted = new Map<string, boolean>();
const handler = async (ctx: TaskContext) => {
  aborted.set(ctx.task.id, false);
  await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  aborted.set(ctx.task.id, true);
};
const worker = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'A', periodMs: 500, store, clock: earlyClock }).handle('demo', handler);
const t0 = performance.now();
const trace = (what: string) => process.env['TRACE'] && process.stdout.write(`${(performance.now() - t0).toFixed(0).padStart(6)} ms ${what}\n`);
worker.on('task-started', (e) => trace(`started ${e.task}`));
worker.on('fenced', () => trace('fenced'));
worker.on('unfenced', () => trace('unfenced'));
await memory.createTask({ id: 'first', type: 'demo', payload: null }, 'now');
await worker.start();
await sleep(1500);
process.stdout.write(`running before: ${worker.runningTasks().join(' ')}\n`);

// Heartbeats now land at once but answer 700 ms late: longer than F - P, shorter than F. The
// lease then runs out shortly before each renewal arrives, and the fence timer, firing just
// early, lets it: the node is never fenced, yet its lease is invalid for a few hundred ms
// out of every period. Tasks added meanwhile are claimed at random moments.
slowHeartbeatMs = 700;
let expiredUnfenced = 0;
let signalledWhileExpired = false;
for (let i = 0; i < 80; i++) {
  if (i % 8 === 0) {
    await memory.createTask({ id: `t${i / 8}`, type: 'demo', payload: null }, 'now');
    await memory.bumpCluster('tasks');
  }
  await sleep(50);
  trace(`lease ${worker.leaseValid() ? 'valid' : 'expired'}, fenced ${worker.snapshot().fenced}, owned ${worker.snapshot().tasks.join(',')}, running ${worker.runningTasks().join(',')}`);
  if (!worker.leaseValid() && !worker.snapshot().fenced) {
    expiredUnfenced += 50;
    if (aborted.get('first')) signalledWhileExpired = true;
  }
}
slowHeartbeatMs = 0;
await sleep(3000);
const owned = worker.snapshot().tasks;
const running = worker.runningTasks();
process.stdout.write(`lease expired but not fenced for about ${expiredUnfenced} ms; abort signal sent to "first" meanwhile: ${signalledWhileExpired}\n`);
process.stdout.write(`owned now: ${owned.join(' ')}; running now: ${running.join(' ')}\n`);
const stuck = owned.filter((id) => !running.includes(id));
if (stuck.length > 0) process.stdout.write(`owned but never started: ${stuck.join(' ')}\n`);
await worker.kill();
process.exit(expiredUnfenced > 0 || stuck.length > 0 ? 1 : 0);

/**
 * Reproduction of chaos finding 7 (docs/chaos-findings.md): a takeover that a node began
 * before it was declared dead finishes after the node has rejoined as a new incarnation, and
 * adopt() runs the tasks it moved to its *old* incarnation, with the tokens of those moves.
 * Meanwhile whoever declared it dead has handed those same tasks on under newer tokens.
 *
 *   npx tsx test/chaos/repro/takeover-across-rejoin.ts     (exit code 1 while the defect is present)
 *
 * In-memory store. C dies; A declares it and starts moving C's tasks (to itself and B), but
 * A's move replies take 3 s, and A's heartbeats fail for 2 s meanwhile (a pause or a
 * partition would do the same), so B declares A dead; A rejoins; then the replies arrive.
 */
import { MemoryStore } from '../../../lib/store/memory-store.js';
import { StoreUnavailableError, type Store } from '../../../lib/store/store.js';
import { Worker } from '../../../lib/worker.js';
import { watchRunners } from './runner-watch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const memory = new MemoryStore();
const flags = { aHeartbeatFails: false, aMoveReplyMs: 0, bBlind: false };
const storeFor = (node: string): Store =>
  new Proxy(memory, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const call = (args: unknown[]) => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      if (key === 'heartbeat' && node === 'A') return async (...args: unknown[]) => {
        if (flags.aHeartbeatFails) throw new StoreUnavailableError('heartbeat failed (injected)');
        return call(args);
      };
      if (key === 'readNodes' && node === 'B') return async (...args: unknown[]) => {
        if (flags.bBlind) throw new StoreUnavailableError('read nodes failed (injected)');
        return call(args);
      };
      if ((key === 'moveTask' || key === 'moveTasks') && node === 'A') return async (...args: unknown[]) => {
        const delay = flags.aMoveReplyMs;
        const out = await call(args); // the move lands at once ...
        if (delay) await sleep(delay); // ... and its reply arrives late
        return out;
      };
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as Store;

const { handler, doubles, regressions } = watchRunners();

for (let i = 0; i < 9; i++) await memory.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'now');
const workers = new Map<string, Worker>();
for (const id of ['A', 'B', 'C']) {
  const w = new Worker({ doorbellHost: '127.0.0.1', nodeId: id, periodMs: 200, store: storeFor(id) }).handle('demo', handler(id));
  await w.start();
  workers.set(id, w);
}
await sleep(2000); // tasks spread over the three
const a = workers.get('A')!;
const t0 = performance.now();
const trace = (line: string) => process.env['TRACE'] && process.stdout.write(`${(performance.now() - t0).toFixed(0).padStart(6)} ms ${line}\n`);
for (const [id, w] of workers) {
  w.on('declared-dead', (e) => trace(`${id} declared ${e.node} dead`));
  w.on('takeover', (e) => trace(`${id} took over ${e.tasks} tasks of ${e.node}, moved ${e.moved}`));
  w.on('zombie', () => trace(`${id} is a zombie`));
  w.on('joined', (e) => trace(`${id} joined as ${e.inc}`));
  w.on('task-started', (e) => trace(`${id} started ${e.task} token ${e.token}`));
  w.on('task-ended', (e) => trace(`${id} ended ${e.task} (${e.outcome})`));
  w.on('rebalanced', (e) => trace(`${id} rebalanced ${e.tasks} tasks to ${e.to}`));
}
let rejoinedAt = 0;
a.on('joined', () => (rejoinedAt = performance.now()));
a.on('declared-dead', (e) => {
  if (e.node !== 'C') return;
  flags.bBlind = false;
  flags.aMoveReplyMs = 3000;
  flags.aHeartbeatFails = true;
  setTimeout(() => (flags.aHeartbeatFails = false), 2000);
});
flags.bBlind = true; // so that A, not B, detects C
await workers.get('C')!.kill();
await sleep(8000);
process.stdout.write(`A rejoined as a new incarnation: ${rejoinedAt > 0}; A runs ${a.runningTasks().join(' ')}; B runs ${workers.get('B')!.runningTasks().join(' ')}\n`);
process.stdout.write(doubles.size === 0 ? 'no task ran on two nodes\n' : `ran on two nodes at once:\n  ${[...doubles].slice(0, 6).join('\n  ')}\n`);
process.stdout.write(regressions.size === 0 ? 'no token went backwards\n' : `tokens went backwards:\n  ${[...regressions].slice(0, 6).join('\n  ')}\n`);
for (const w of workers.values()) await w.kill();
process.exit(doubles.size > 0 || regressions.size > 0 ? 1 : 0);

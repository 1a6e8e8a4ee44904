/**
 * Reproduction of chaos finding 4 (docs/chaos-findings.md): a node that is fenced when its
 * graceful leave begins, and renews its lease while the leave is handing its tasks over,
 * restarts every task it is handing over (renew() -> startRun() for all owned tasks; neither
 * checks that the node is leaving). The new owners run them too.
 *
 *   npx tsx test/chaos/repro/leave-unfence.ts     (exit code 1 while the defect is present)
 */
import { MemoryStore } from '../../../lib/store/memory-store.js';
import { StoreUnavailableError, type Store } from '../../../lib/store/store.js';
import { Worker } from '../../../lib/worker.js';
import { watchRunners } from './runner-watch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const memory = new MemoryStore();
const failing = new Set<string>(); // node ids whose heartbeats fail
let slowMovesMs = 0;
const storeFor = (node: string): Store =>
  new Proxy(memory, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (key === 'heartbeat') return async (...args: unknown[]) => {
        if (failing.has(node)) throw new StoreUnavailableError('heartbeat failed: injected');
        return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
      if (key === 'moveTask' || key === 'moveTasks') return async (...args: unknown[]) => {
        // The write lands at once; the reply is slow, and slower for t5, so that the handover
        // as a whole takes a while after the first tasks have moved.
        const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (slowMovesMs) await sleep(args[0] === 't5' ? slowMovesMs * 3 : slowMovesMs);
        return out;
      };
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  }) as Store;

const { handler, doubles } = watchRunners();

for (let i = 0; i < 6; i++) await memory.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'now');
const a = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'A', periodMs: 200, store: storeFor('A') }).handle('demo', handler('A'));
await a.start();
await sleep(800); // A claims all six
// B looks for handed-over tasks on every maintenance pass (resyncTicks 1), not only when notified at the
// end of the handover, so it starts each task as soon as its move lands.
const b = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'B', periodMs: 200, store: storeFor('B'), maxMovesPerTick: 0, resyncTicks: 1 }).handle('demo', handler('B'));
await b.start();

let leaving = false;
const startedWhileLeaving: string[] = [];
a.on('task-started', (e) => leaving && startedWhileLeaving.push(`${e.task} (token ${e.token})`));
failing.add('A');
await new Promise<void>((resolve) => a.once('fenced', () => resolve()));
slowMovesMs = 800; // the handover takes a while ...
leaving = true;
const left = a.stop();
await sleep(100);
failing.delete('A'); // ... and A's heartbeat succeeds in the middle of it
await left;
await sleep(500);
process.stdout.write(`tasks A started again during its own graceful leave: ${startedWhileLeaving.join(', ') || 'none'}\n`);
process.stdout.write(doubles.size === 0 ? 'no task ran on two nodes\n' : `ran on two nodes at once:\n  ${[...doubles].slice(0, 6).join('\n  ')}\n`);
await b.kill();
process.exit(startedWhileLeaving.length > 0 || doubles.size > 0 ? 1 : 0);

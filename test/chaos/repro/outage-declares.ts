/**
 * Candidate reproduction for chaos finding 5 (docs/chaos-findings.md): after a store outage,
 * does a node that merely came back a little later than its observer get declared dead?
 * Every node's counter keeps counting its periods while the store is down, so right after
 * the outage an observer's own counter has moved by the length of the outage since it last
 * saw its peers' (unchanged) counters.
 *
 *   npx tsx test/chaos/repro/outage-declares.ts     (exit code 1 if any node is declared dead)
 */
import { MemoryStore } from '../../../lib/store/memory-store.js';
import { StoreUnavailableError, type Store } from '../../../lib/store/store.js';
import { Worker } from '../../../lib/worker.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const memory = new MemoryStore();
let down = false;
// After the outage, node d's requests keep failing a little longer than everyone else's (on
// a restarted DynamoDB Local, some clients' first requests time out): fewer periods than K.
let lateNode: string | undefined;
const storeFor = (node: string) =>
  new Proxy(memory, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        if (down || lateNode === node) throw new StoreUnavailableError(`${String(key)} failed: connect ECONNREFUSED (injected outage)`);
        return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  }) as Store;

const periodMs = 200;
const outagePeriods = Number(process.argv[2] ?? 20);
const latePeriods = Number(process.argv[3] ?? 2);
const workers: Worker[] = [];
const declared: string[] = [];
for (let i = 0; i < 5; i++) await memory.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'now');
for (const id of ['a', 'b', 'c', 'd']) {
  const w = new Worker({ doorbellHost: '127.0.0.1', nodeId: id, periodMs, store: storeFor(id) }).handle('demo', async (ctx) => {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  });
  w.on('declared-dead', (e) => declared.push(`${id} declared ${e.node} dead (staleness ${e.staleness})`));
  await w.start();
  workers.push(w);
  await sleep(periodMs / 4 + 7); // spread the phases of the counter loops
}
await sleep(3000);
const before = declared.length;
down = true;
await sleep(outagePeriods * periodMs);
lateNode = 'd';
down = false;
await sleep(latePeriods * periodMs);
lateNode = undefined;
await sleep(3000);
const after = declared.slice(before);
process.stdout.write(`store down for ${outagePeriods} periods of ${periodMs} ms, for d ${latePeriods} periods longer (K = ${workers[0]!.config.staleTicks}); declarations before: ${before}; after the outage: ${after.length}\n`);
for (const d of after) process.stdout.write(`  ${d}\n`);
for (const w of workers) await w.kill();
process.exit(after.length > 0 ? 1 : 0);

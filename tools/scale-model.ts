import { MemoryStore } from '../lib/store/memory-store.js';
import type { Store } from '../lib/store/store.js';
import { Worker } from '../lib/worker.js';
import { networkStore, prng, SimClock, VirtualTime } from '../test/support/sim.js';

/**
 * The real Worker code at cluster sizes one machine cannot run against DynamoDB Local:
 * N simulated nodes over the in-memory store in virtual time, counting every store call a
 * node makes. docs/scale.md turns these counts into request units and dollars.
 *
 *   npx tsx tools/scale-model.ts <nodes> [tasksPerNode] [periods]
 */
export interface ScaleFigures {
  nodes: number;
  tasks: number;
  periods: number;
  /** Store calls per node per period in the steady state, by operation. */
  callsPerNodePeriod: Record<string, number>;
  /** Node items read per node per period (BatchGetItem keys, the cluster item not counted). */
  itemsReadPerNodePeriod: number;
  /** Members-index entries read per node per period in the steady state (periodic ring refreshes). */
  memberEntriesPerNodePeriod: number;
  /** Members-index entries read by the whole cluster because of one death (periodic refreshes off). */
  memberEntriesPerDeath: number;
  /** Virtual ms from a crash until all its tasks run again. */
  takeoverMs: number;
  wallMs: number;
}

interface Counter {
  calls: Map<string, number>;
  items: number;
  members: number;
}

function counting(store: Store, counter: Counter): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver);
      if (typeof original !== 'function') return original;
      return async (...args: unknown[]) => {
        const name = String(prop);
        counter.calls.set(name, (counter.calls.get(name) ?? 0) + 1);
        const result = await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (name === 'readNodes') counter.items += (result as { nodes: Map<string, unknown> }).nodes.size;
        if (name === 'ringSuccessors' || name === 'ringPredecessors') counter.members += (result as unknown[]).length;
        return result;
      };
    },
  });
}

export async function measureScale(nodes: number, tasksPerNode = 20, periods = 20, seed = 1): Promise<ScaleFigures> {
  const started = performance.now();
  const rnd = prng(seed);
  const time = new VirtualTime();
  const shared = new MemoryStore();
  const counter: Counter = { calls: new Map(), items: 0, members: 0 };
  const store = counting(shared, counter);
  const taskCount = nodes * tasksPerNode;
  const running = new Map<string, string>();
  const workers: Worker[] = [];
  const clocks: SimClock[] = [];
  for (let i = 0; i < nodes; i++) {
    const clock = new SimClock(time, 1, 0);
    clocks.push(clock);
    const id = `n${i}`;
    const net = networkStore(store, time, clock, { latency: () => 2 + rnd() * 3, partitioned: () => false, lostReply: () => 0, random: rnd, timeoutMs: 200 });
    const worker = new Worker({ store: net, clock, random: rnd, nodeId: id, doorbell: false, periodMs: 1000, capacity: tasksPerNode * 4 }).handle('demo', (ctx) => {
      running.set(ctx.task.id, id);
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          if (running.get(ctx.task.id) === id) running.delete(ctx.task.id);
          resolve();
        }),
      );
    });
    workers.push(worker);
    // Nodes join over the first few seconds, as an autoscaling group would start them.
    time.schedule(rnd() * 5000, () => void worker.start());
  }
  // Hand the tasks out directly once everyone has joined (claiming 100,000 tasks one query at
  // a time would only measure the start-up), then warm up until every task runs.
  await time.run(8000);
  const { nodes: items } = await shared.readNodes(Array.from({ length: nodes }, (_, i) => `n${i}`), { cluster: false });
  for (let i = 0; i < taskCount; i++) {
    await shared.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'model');
    const node = items.get(`n${i % nodes}`);
    if (node) await shared.moveTask(`t${i}`, { owner: null, ownerInc: 0, token: 0 }, { owner: node.id, ownerInc: node.inc });
  }
  for (let i = 0; i < nodes; i++) await shared.notify(`n${i}`);
  let t = 8000;
  do {
    t += 5000;
    await time.run(t);
  } while (running.size < taskCount && t < 300_000);
  await time.run((t += 10_000));

  // Steady state: count one window.
  counter.calls.clear();
  counter.items = 0;
  counter.members = 0;
  await time.run((t += periods * 1000));
  const memberEntriesPerNodePeriod = counter.members / nodes / periods;
  const callsPerNodePeriod: Record<string, number> = {};
  for (const [name, n] of [...counter.calls].sort()) callsPerNodePeriod[name] = Math.round((n / nodes / periods) * 1000) / 1000;
  const itemsReadPerNodePeriod = Math.round((counter.items / nodes / periods) * 1000) / 1000;

  // One crash: who re-reads the ring, and how long until its tasks run again. Periodic
  // refreshes are switched off for this window so that the reads the death causes stand out.
  for (const w of workers) (w.config as { resyncTicks: number }).resyncTicks = 1_000_000_000;
  const victim = Math.floor(rnd() * nodes);
  const lost = [...running].filter(([, node]) => node === `n${victim}`).map(([task]) => task);
  counter.members = 0;
  clocks[victim]!.killed = true;
  void workers[victim]!.kill();
  const crashAt = time.now;
  let takeoverMs = Number.NaN;
  const until = crashAt + 60_000;
  while (time.now < until) {
    await time.run(time.now + 250);
    if (Number.isNaN(takeoverMs) && lost.every((task) => running.has(task) && running.get(task) !== `n${victim}`)) takeoverMs = time.now - crashAt;
  }
  const memberEntriesPerDeath = counter.members;
  for (const [i, w] of workers.entries()) {
    clocks[i]!.killed = true;
    void w.kill();
  }
  return {
    nodes,
    tasks: taskCount,
    periods,
    callsPerNodePeriod,
    itemsReadPerNodePeriod,
    memberEntriesPerNodePeriod: Math.round(memberEntriesPerNodePeriod * 1000) / 1000,
    memberEntriesPerDeath,
    takeoverMs, wallMs: Math.round(performance.now() - started) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [nodes = '100', tasksPerNode = '20', periods = '20'] = process.argv.slice(2);
  const figures = await measureScale(Number(nodes), Number(tasksPerNode), Number(periods));
  process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
}

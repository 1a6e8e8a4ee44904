import { MemoryStore } from '../lib/store/memory-store.js';
import type { Store } from '../lib/store/store.js';
import { Worker } from '../lib/worker.js';
import { networkStore, prng, SimClock, VirtualTime } from '../test/support/sim.js';

/**
 * A cluster taking on a stream of new tasks, with the real Worker code in virtual time (the
 * claim path at sizes one machine cannot run against DynamoDB Local; docs/bench-findings.md,
 * finding 2). Nodes start 10 every 0.5 s, then tasks are added at `rate` per second.
 *
 *   npx tsx tools/feed-model.ts <nodes> [tasks] [rate per second]
 */
export interface FeedFigures {
  nodes: number;
  tasks: number;
  /** Virtual seconds from the last task added to the last handler start (none started for 3 s after it, every task running). */
  quietAfterFeedS: number | undefined;
  /** Conditional moves of free tasks that were refused (two claimants for one task). */
  refusedClaims: number;
  /** Free-pool queries and the items they returned, per node per period, while tasks were added. */
  poolQueriesPerNodePeriod: number;
  poolItemsPerNodePeriod: number;
  /**
   * Per task added, while tasks were added: notifications of receivers, and the reads of a
   * node's whole task list they trigger (both grow when free tasks are dealt out one by one).
   */
  notifiesPerTask: number;
  ownTaskReadsPerTask: number;
  /** Handler starts beyond one per task: tasks moved again after their first start. */
  extraStarts: number;
  minLoad: number;
  maxLoad: number;
}

export async function measureFeed(nodes: number, taskCount: number, rate: number, seed = 7): Promise<FeedFigures> {
  const rnd = prng(seed);
  const time = new VirtualTime();
  const shared = new MemoryStore();
  const pool = { queries: 0, items: 0, refused: 0, notifies: 0, ownReads: 0 };
  const counted: Store = new Proxy(shared, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver);
      if (typeof original !== 'function') return original;
      return async (...args: unknown[]) => {
        const result = await (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (prop === 'unownedTasks') {
          pool.queries += 1;
          pool.items += (result as unknown[]).length;
        }
        if (prop === 'notify') pool.notifies += 1;
        if (prop === 'tasksOwnedBy') pool.ownReads += 1;
        if (prop === 'moveTask' && (args[1] as { owner?: unknown }).owner === null && !result) pool.refused += 1;
        if (prop === 'moveTasks' && (args[0] as Array<{ from: { owner?: unknown } }>)[0]?.from.owner === null && result === false) pool.refused += 1;
        return result;
      };
    },
  });
  const running = new Map<string, string>();
  let starts = 0;
  const workers: Worker[] = [];
  const capacity = Math.max(1000, Math.ceil((taskCount / nodes) * 1.1));
  for (let i = 0; i < nodes; i++) {
    const clock = new SimClock(time, 1, 0);
    const id = `k${i}`;
    const net = networkStore(counted, time, clock, { latency: () => 2 + rnd() * 3, partitioned: () => false, lostReply: () => 0, random: rnd, timeoutMs: 200 });
    const worker = new Worker({ store: net, clock, random: rnd, nodeId: id, doorbell: false, periodMs: 1000, capacity }).handle('demo', (ctx) => {
      running.set(ctx.task.id, id);
      starts += 1;
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          if (running.get(ctx.task.id) === id) running.delete(ctx.task.id);
          resolve();
        }),
      );
    });
    workers.push(worker);
    time.schedule(Math.floor(i / 10) * 500, () => void worker.start());
  }
  const feedStart = Math.ceil(nodes / 10) * 500 + 3000;
  await time.run(feedStart);
  const feedMs = (taskCount / rate) * 1000;
  let created = 0;
  for (let step = 0; step * 100 < feedMs; step++) {
    time.schedule(feedStart + step * 100, () => {
      const due = Math.min(taskCount, Math.round(((step + 1) * 100 * rate) / 1000));
      for (; created < due; created++) void shared.createTask({ id: `task-${created}`, type: 'demo', payload: null }, 'model').then(() => shared.bumpCluster('tasks'));
    });
  }
  await time.run(feedStart + feedMs);
  const duringFeed = { ...pool };
  let lastStarts = -1;
  let quietSince = time.now;
  let quietAfterFeedS: number | undefined;
  for (let t = time.now + 1000; t < feedStart + feedMs + 300_000; t += 1000) {
    await time.run(t);
    if (starts !== lastStarts) {
      lastStarts = starts;
      quietSince = t;
    }
    if (running.size === taskCount && t - quietSince >= 3000) {
      quietAfterFeedS = (quietSince - (feedStart + feedMs)) / 1000;
      break;
    }
  }
  const loads = workers.map((w) => w.runningTasks().length);
  for (const w of workers) void w.kill();
  const periods = feedMs / 1000;
  return {
    nodes,
    tasks: taskCount,
    quietAfterFeedS,
    refusedClaims: pool.refused,
    poolQueriesPerNodePeriod: Math.round((duringFeed.queries / nodes / periods) * 100) / 100,
    poolItemsPerNodePeriod: Math.round((duringFeed.items / nodes / periods) * 100) / 100,
    notifiesPerTask: Math.round((duringFeed.notifies / taskCount) * 100) / 100,
    ownTaskReadsPerTask: Math.round((duringFeed.ownReads / taskCount) * 100) / 100,
    extraStarts: starts - taskCount,
    minLoad: Math.min(...loads),
    maxLoad: Math.max(...loads),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [nodes = '200', tasks = '20000', rate = '300'] = process.argv.slice(2);
  console.log(await measureFeed(Number(nodes), Number(tasks), Number(rate)));
  process.exit(0);
}

import { describe, expect, it } from 'vitest';
import { failoverBoundMs, resolveConfig, type KeeperOptions } from '../lib/config.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import type { TaskContext } from '../lib/tasks.js';
import { Worker } from '../lib/worker.js';
import { networkStore, prng, SimClock, VirtualTime } from './support/sim.js';

/**
 * Task weights in the simulator: real Workers over the in-memory store, in virtual time,
 * with skewed clocks, network latency and lost replies, and rebalancing on.
 *
 * Five nodes of capacity 12 run tasks of weights 1 to 4 (about 30 in all) and one task of
 * weight 13, heavier than every node. After the warm-up the node holding the most weight
 * crashes; the four left have room for all but the heavy one. Checked at every step: no task
 * runs on two nodes at once, no node runs more weight than its capacity, the heavy task
 * never runs. At the end, after the takeover and time for rebalancing: every other task runs
 * on exactly one live node, the heavy one waits in the pool, and the live nodes' loads are
 * within one heaviest task of each other's.
 */
interface Run {
  node: string;
  clock: SimClock;
  task: string;
  ctx: TaskContext;
}

interface Outcome {
  violations: string[];
  loads: number[];
}

const capacity = 12;

async function weightedSchedule(seed: number): Promise<Outcome> {
  const rnd = prng(seed);
  const time = new VirtualTime();
  const settings: KeeperOptions = { periodMs: 1000, driftBound: 1.05, staleTicks: 4, capacity, doorbell: rnd() < 0.5 };
  const config = resolveConfig(settings);
  const shared = new MemoryStore();
  const violations: string[] = [];
  const active = new Set<Run>();
  const workers = new Map<string, { worker: Worker; clock: SimClock }>();
  let crashAt = Number.POSITIVE_INFINITY;

  const weights = new Map<string, number>();
  for (let i = 0; weights.size < 14; i++) weights.set(`task-${i}`, 1 + Math.floor(rnd() * 4));
  const heaviest = Math.max(...weights.values());
  for (const [id, weight] of weights) await shared.createTask({ id, type: 'demo', payload: null, weight }, 'sim');
  await shared.createTask({ id: 'huge', type: 'demo', payload: null, weight: capacity + 1 }, 'sim');
  await shared.bumpCluster('tasks');

  for (let i = 0; i < 5; i++) {
    const id = `n${i}`;
    const clock = new SimClock(time, 1 + (rnd() * 2 - 1) * (config.driftBound - 1), (rnd() * 2 - 1) * 36_000_000);
    const store = networkStore(shared, time, clock, {
      latency: () => 1 + rnd() * 20,
      partitioned: () => false,
      lostReply: () => (time.now < crashAt + 10_000 ? 0.01 : 0),
      random: rnd,
      timeoutMs: config.requestTimeoutMs,
    });
    const worker = new Worker({ ...settings, store, clock, random: rnd, nodeId: id });
    worker.handle('demo', (ctx) => {
      const run: Run = { node: id, clock, task: ctx.task.id, ctx };
      active.add(run);
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          active.delete(run);
          resolve();
        }),
      );
    });
    workers.set(id, { worker, clock });
    void worker.start().catch((error) => violations.push(`${id} failed to start: ${String(error)}`));
  }

  const valid = (r: Run) => !r.clock.killed && r.ctx.isValid();
  const runners = (task: string) => [...active].filter((r) => r.task === task && valid(r)).map((r) => r.node);
  const loadOf = (node: string) => [...active].filter((r) => r.node === node && valid(r)).reduce((n, r) => n + (weights.get(r.task) ?? capacity + 1), 0);
  const check = () => {
    for (const task of [...weights.keys(), 'huge']) if (runners(task).length > 1) violations.push(`t=${Math.round(time.now)}: ${task} runs on ${runners(task).join(' and ')} at once`);
    for (const node of workers.keys()) if (loadOf(node) > capacity) violations.push(`t=${Math.round(time.now)}: ${node} runs weight ${loadOf(node)} > capacity ${capacity}`);
    if (runners('huge').length > 0) violations.push(`t=${Math.round(time.now)}: huge runs on ${runners('huge').join()}`);
  };

  await new Promise<void>((resolve) => setImmediate(resolve));
  await time.run(30_000, check);
  const [victimId, victim] = [...workers].sort(([a], [b]) => loadOf(b) - loadOf(a))[0]!;
  crashAt = time.now;
  victim.clock.killed = true;
  void victim.worker.kill();
  // The takeover, then rebalancing: a task stays 10 passes before it may move on.
  await time.run(crashAt + failoverBoundMs(config, 10) + 60_000, check);

  for (const task of weights.keys()) {
    const nodes = runners(task);
    if (nodes.length !== 1 || nodes[0] === victimId) violations.push(`end: ${task} runs on ${nodes.join(' and ') || 'no node'}`);
  }
  const huge = await shared.getTask('huge');
  if (huge?.owner !== null || huge.state !== 'ready') violations.push(`end: huge is not waiting in the pool (owner ${huge?.owner})`);
  const loads = [...workers.keys()].filter((id) => id !== victimId).map(loadOf);
  if (Math.max(...loads) - Math.min(...loads) > heaviest) violations.push(`end: loads ${loads.join(', ')} differ by more than the heaviest task (${heaviest})`);
  for (const { worker, clock } of workers.values()) {
    clock.killed = true;
    void worker.kill();
  }
  return { violations, loads };
}

describe('weights in the simulator (in-memory store, virtual time)', () => {
  it('a crash with tasks of weights 1 to 4: never past capacity, never two runs at once, the over-heavy task never runs, and loads end within one heaviest task of each other', async () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= 30; seed++) {
      const outcome = await weightedSchedule(seed);
      if (outcome.violations.length > 0) failures.push(`seed ${seed}: ${outcome.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
  }, 300_000);
});

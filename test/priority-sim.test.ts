import { describe, expect, it } from 'vitest';
import { failoverBoundMs, resolveConfig, type KeeperOptions } from '../lib/config.js';
import { taskSlot } from '../lib/store/items.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import type { TaskContext } from '../lib/tasks.js';
import { Worker } from '../lib/worker.js';
import { networkStore, prng, SimClock, VirtualTime } from './support/sim.js';
import { runSchedule } from './support/simulation.js';

/**
 * Priorities under shortage and the start-rate limit in the simulator: real Workers over the
 * in-memory store, in virtual time, with skewed clocks, network latency and lost replies.
 *
 * Four nodes of four places run fourteen tasks; the one holding four crashes. The three left
 * have two places for its four tasks: the takeover must place its two most urgent and put
 * the other two back in the pool, where they wait (no node has room). Every node starts at
 * most maxStartsPerSecond tasks per second of its own clock, and no task ever runs on two
 * nodes at once. Priorities rise against ring order (the order the owner index lists the
 * tasks in), so a placement in that order would keep the wrong ones.
 */
interface Run {
  node: string;
  clock: SimClock;
  task: string;
  ctx: TaskContext;
}

interface Outcome {
  violations: string[];
  takeoverMs: number | undefined;
  boundMs: number;
  starts: number;
}

async function shortageSchedule(seed: number): Promise<Outcome> {
  const rnd = prng(seed);
  const time = new VirtualTime();
  const maxStartsPerSecond = 4;
  const settings: KeeperOptions = { periodMs: 1000, driftBound: 1.05, staleTicks: 4, capacity: 4, maxMovesPerTick: 0, maxStartsPerSecond, doorbell: false };
  const config = resolveConfig(settings);
  const shared = new MemoryStore();
  const violations: string[] = [];
  const active = new Set<Run>();
  const workers = new Map<string, { worker: Worker; clock: SimClock }>();
  const lastStart = new Map<string, number>();
  let starts = 0;
  let crashAt = Number.POSITIVE_INFINITY;

  const ids = Array.from({ length: 14 }, (_, i) => `task-${i}`).sort((a, b) => (taskSlot(a) < taskSlot(b) ? -1 : 1));
  const priority = new Map(ids.map((id, rank) => [id, rank]));
  for (const id of ids) await shared.createTask({ id, type: 'demo', payload: null, priority: priority.get(id)! }, 'sim');
  await shared.bumpCluster('tasks');

  for (let i = 0; i < 4; i++) {
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
    worker.on('task-started', ({ task }) => {
      starts += 1;
      // One start per 1/rate of the node's own clock (a tolerance for floating point only).
      const previous = lastStart.get(id);
      const gap = clock.now() - (previous ?? Number.NEGATIVE_INFINITY);
      if (gap < 1000 / maxStartsPerSecond - 1e-6) violations.push(`t=${Math.round(time.now)}: ${id} started ${task} ${gap.toFixed(3)} ms after its previous start`);
      lastStart.set(id, clock.now());
    });
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

  const runners = (task: string) => [...active].filter((r) => r.task === task && !r.clock.killed && r.ctx.isValid()).map((r) => r.node);
  let recoveredAt: number | undefined;
  let top: string[] = [];
  const check = () => {
    for (const task of ids) if (runners(task).length > 1) violations.push(`t=${Math.round(time.now)}: ${task} runs on ${runners(task).join(' and ')} at once`);
    if (recoveredAt === undefined && top.length > 0 && top.every((t) => runners(t).length === 1)) recoveredAt = time.now;
  };

  await new Promise<void>((resolve) => setImmediate(resolve));
  const warmup = 20_000;
  await time.run(warmup, check);
  const settled = ids.filter((t) => runners(t).length === 1).length;
  if (settled !== ids.length) violations.push(`before the crash: ${settled} of ${ids.length} tasks running`);
  const [victimId, victim] = [...workers].find(([, w]) => w.worker.runningTasks().length === 4)!;
  const lost = victim.worker.runningTasks().sort((a, b) => priority.get(b)! - priority.get(a)!);
  top = lost.slice(0, 2);
  const left = lost.slice(2);
  const before = new Map(ids.filter((t) => !lost.includes(t)).map((t) => [t, runners(t)[0]]));
  crashAt = time.now;
  victim.clock.killed = true;
  void victim.worker.kill();
  const boundMs = failoverBoundMs(config, lost.length) + 500;
  await time.run(crashAt + boundMs + 10_000, check);

  if (recoveredAt === undefined) violations.push(`the two most urgent of ${victimId}'s tasks (${top.join(', ')}) never ran elsewhere`);
  else if (recoveredAt - crashAt > boundMs) violations.push(`takeover took ${Math.round(recoveredAt - crashAt)} ms > bound ${Math.round(boundMs)}`);
  for (const task of left) {
    if (runners(task).length > 0) violations.push(`${task} (priority ${priority.get(task)}) runs, though more urgent tasks filled the room`);
    if ((await shared.getTask(task))?.owner !== null) violations.push(`${task} (priority ${priority.get(task)}) is not back in the pool`);
  }
  for (const [task, node] of before) if (runners(task).join() !== node) violations.push(`${task} moved from ${node} to ${runners(task).join(' and ') || 'nowhere'}`);
  for (const { worker, clock } of workers.values()) {
    clock.killed = true;
    void worker.kill();
  }
  return { violations, takeoverMs: recoveredAt === undefined ? undefined : recoveredAt - crashAt, boundMs, starts };
}

describe('priorities and the start rate in the simulator (in-memory store, virtual time)', () => {
  it('a crash under shortage: the dead node\'s most urgent tasks take the room left, the rest wait in the pool; starts stay within the rate; never two runs at once', async () => {
    const failures: string[] = [];
    const takeovers: number[] = [];
    for (let seed = 1; seed <= 40; seed++) {
      const outcome = await shortageSchedule(seed);
      if (outcome.violations.length > 0) failures.push(`seed ${seed}: ${outcome.violations.slice(0, 3).join('; ')}`);
      if (outcome.takeoverMs !== undefined) takeovers.push(outcome.takeoverMs);
      expect(outcome.starts).toBeGreaterThanOrEqual(16);
    }
    expect(failures).toEqual([]);
    expect(takeovers).toHaveLength(40);
  }, 300_000);

  it('the seeded fault schedules with a start rate of one per two seconds (queues that stay long): crashes, pauses, partitions, leaves and drains; no task runs twice, takeovers stay within the bound with the start wait, no task is lost', async () => {
    const failures: string[] = [];
    let takeovers = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const result = await runSchedule(seed, { maxStartsPerSecond: 0.5, ...(seed % 3 === 0 ? { kinds: ['crash', 'pause', 'leave', 'drain'], warmUp: true } : {}) });
      takeovers += result.takeoversMs.length;
      if (result.violations.length > 0) failures.push(`seed ${seed} (${result.faults.join(', ')}): ${result.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
    expect(takeovers).toBeGreaterThan(10);
  }, 600_000);
});

import { sleep } from '../../lib/clock.js';
import { failoverBoundMs, mixedFailoverBoundMs, resolveConfig, type KeeperOptions } from '../../lib/config.js';
import { MemoryStore } from '../../lib/store/memory-store.js';
import type { NodeItem, Store } from '../../lib/store/store.js';
import type { TaskContext } from '../../lib/tasks.js';
import { Worker } from '../../lib/worker.js';
import { canonical, networkStore, prng, recorded, recordedBell, SimClock, SimDoorbells, VirtualTime } from './sim.js';
import { SimCloud } from './sim-cloud.js';

/**
 * One seeded schedule of the deterministic simulator: 3 to 9 nodes with skewed clocks (any
 * offset, rates within the drift bound) over one in-memory store with network latency and
 * lost replies, and a random mix of crashes (some restarted, some with the same id), pauses
 * longer than the failover bound (zombies), partitions and graceful leaves, under balanced
 * or first-detector takeover.
 *
 * Checked after every step of virtual time:
 *  - safety: no task is run by two nodes at once, counting only runs whose lease check
 *    (ctx.isValid(), on the node's own clock) passes on a process that is not frozen;
 *  - fencing tokens of a task never go down from one start to the next;
 * and at the end:
 *  - every crash that no other fault overlapped was fully taken over within the bound;
 *  - after the faults, every task runs on exactly one live node, and no task was lost;
 *  - every finite task (some created during the faults) is done; none started again once
 *    its outcome was in the table; and its side effect happened once, or again only after
 *    the node that did it first was crashed, paused, partitioned or left before it could
 *    record the outcome (at least once across such faults, as documented).
 */
export interface ScheduleResult {
  seed: number;
  nodes: number;
  tasks: number;
  faults: string[];
  violations: string[];
  takeoversMs: number[];
  boundMs: number;
  /** Finite tasks: how many, their side effects, and how many of those repeated one (after a fault of the node that did it first). */
  finite: { tasks: number; effects: number; repeated: number };
  /** The cloud's behaviours (sim-cloud.ts), when the schedule ran with them. */
  cloud?: SimCloud['stats'] & { indexLagMs: number };
  /** Drains that no other fault overlapped: tasks the node held when its drain began, and when it ended. */
  drains?: Array<{ node: string; heldAtStart: number; heldAtEnd: number }>;
}

interface Run {
  node: string;
  clock: SimClock;
  task: string;
  token: number;
  ctx: TaskContext;
}

interface Proc {
  id: string;
  clock: SimClock;
  worker: Worker;
  partitionedUntil: number;
  dead: boolean;
  /** When a fault took it out (crash and leave: for good). */
  troubles: Array<{ from: number; to: number }>;
}

/** A finite task's side effect: done by a run whose lease check passed when it finished. */
interface Effect {
  proc: Proc;
  token: number;
  at: number;
}

/** `drain` (an operator's drain for the fault's duration, then undrain) only when asked for: the default mix, and so every digest, stays as it was. */
type FaultKind = 'crash' | 'pause' | 'partition' | 'leave' | 'drain';

export interface ScheduleOverrides {
  drift?: 'tight' | 'wide';
  kinds?: FaultKind[];
  /** Runs with (or without) the cloud's behaviours: index lag, partial batch reads, per-partition throttling. */
  cloud?: boolean;
  /** Starts the nodes at time 0, so that they run the warm-up before the first fault (see runSchedule). */
  warmUp?: boolean;
  /** Every node starts at most this many tasks per second (maxStartsPerSecond); the takeover bound counts the wait. */
  maxStartsPerSecond?: number;
  /** Bypasses config validation with a fence window that is too long: the checker must catch it. */
  unsafeFenceMs?: number;
  /**
   * Every node (and every replacement) runs settings drawn from `mixedSettings`: periods,
   * stale thresholds, drift bounds and handler stop times of a rolling change of them, each
   * node's clock within its own drift bound. The takeover bound is the larger peer's
   * (mixedFailoverBoundMs).
   */
  mixed?: boolean;
  /** Hides the settings nodes publish from the detectors, which then judge every peer by their own (a keeper from before): the checker must catch it. */
  judgeByOwnSettings?: boolean;
  trace?: (line: string) => void;
  /**
   * Every store call each node makes with its outcome, every event it emits, every ring it
   * sends and every log line, in the order they happen: the schedule's record, whose digest
   * must not change under a refactor (tools/sim-digests.ts).
   */
  record?: (line: string) => void;
}

/** What the nodes of a `mixed` schedule run, over the schedule's own settings: a rolling change of period, stale threshold, drift bound or handler stop time. */
const mixedSettings: KeeperOptions[] = [
  {},
  { periodMs: 500 },
  { periodMs: 1500, staleTicks: 3 },
  { periodMs: 750, staleTicks: 6 },
  { handlerStopMs: 300, staleTicks: 5 },
  { driftBound: 1.2, staleTicks: 5 },
];

/** A store whose node reads carry no published settings: detectors then judge every peer by their own. */
function withoutPublishedSettings(store: Store): Store {
  const strip = (node: NodeItem): NodeItem => {
    const { settings: _hidden, ...rest } = node;
    return rest;
  };
  return Object.assign(Object.create(store) as Store, {
    readNodes: async (ids: string[], options?: { cluster?: boolean }) => {
      const read = await store.readNodes(ids, options);
      return { ...read, nodes: new Map([...read.nodes].map(([id, node]) => [id, strip(node)])) };
    },
  });
}

export async function runSchedule(seed: number, overrides: ScheduleOverrides = {}): Promise<ScheduleResult> {
  const rnd = prng(seed);
  const time = new VirtualTime();
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const wide = overrides.drift ? overrides.drift === 'wide' : rnd() < 0.3;
  const takeover = rnd() < 0.2 ? 'detector' : 'balanced';
  const inbox = rnd() < 0.3 ? { inboxPollMs: 200 } : {};
  // Most schedules ring receivers over a network that loses, repeats and delays rings (some
  // by more than a period, to reach a later process with the same id).
  const bells =
    rnd() < 0.7
      ? new SimDoorbells(time, { latency: () => (rnd() < 0.1 ? rnd() * 3000 : 1 + rnd() * 20), lost: 0.1, duplicated: 0.1, random: rnd })
      : undefined;
  const startRate = overrides.maxStartsPerSecond ? { maxStartsPerSecond: overrides.maxStartsPerSecond } : {};
  const settings: KeeperOptions = wide
    ? { periodMs: 1000, driftBound: 2, staleTicks: 9, takeover, ...inbox, ...startRate }
    : { periodMs: 1000, driftBound: 1.05, staleTicks: 4, takeover, ...inbox, ...startRate };
  const config = resolveConfig(settings);
  // The mixed settings fit tight clocks (their stale thresholds are too small for f = 2).
  if (overrides.mixed && wide) throw new Error('mixed schedules run with tight drift: pass drift: "tight"');
  const mixed = overrides.mixed ? mixedSettings.map((m) => ({ options: { ...settings, ...m }, config: resolveConfig({ ...settings, ...m }) })) : undefined;
  // Two schedules in five run in the cloud (sim-cloud.ts), drawn from a stream of their own,
  // so that a schedule without it unfolds exactly as it did before the cloud existed.
  const cloudRnd = prng(seed ^ 0x5f3759df);
  const inCloud = overrides.cloud ?? cloudRnd() < 0.4;
  // Up to three seconds: within the declarer's last follow-up even on the slowest clocks here.
  // (Mixed schedules' shortest period, 500 ms, reaches its last follow-up 2.5 s in on the
  // fastest clock of theirs: their lag stays below.)
  const indexLagMs = Math.min(100 + cloudRnd() * 2900, overrides.mixed ? 2400 : Number.POSITIVE_INFINITY);
  const cloud = inCloud
    ? new SimCloud(time, { indexLagMs, unprocessedShare: cloudRnd() * 0.2, partitionWritesPerSecond: 2 + cloudRnd() * 10, random: cloudRnd })
    : undefined;
  // With a start rate, a receiver may queue every task of the schedule (at most 30, and 8 finite ones) behind one another.
  const startWaitMs = config.maxStartsPerSecond > 0 ? ((38 * 1000) / config.maxStartsPerSecond) * config.driftBound : 0;
  const bound = (mixed ? mixedFailoverBoundMs(mixed.map((m) => m.config), cloud ? indexLagMs : 0) : failoverBoundMs(config, 0, cloud ? indexLagMs : 0)) + startWaitMs + 500;
  if (!Number.isFinite(bound)) throw new Error(`seed ${seed}: no failover bound for an index lag of ${Math.round(indexLagMs)} ms`);
  const nodeCount = 3 + Math.floor(rnd() * 7);
  const taskCount = 5 + Math.floor(rnd() * 26);
  const shared = new MemoryStore();
  const violations: string[] = [];
  const faults: string[] = [];
  const active = new Set<Run>();
  const lastToken = new Map<string, number>();
  const procs: Proc[] = [];
  const rate = (f = config.driftBound) => (wide ? Math.exp((rnd() * 2 - 1) * Math.log(f)) : 1 + (rnd() * 2 - 1) * (f - 1));

  const spawn = (id: string): Proc => {
    const own = mixed ? pick(mixed) : { options: settings, config };
    const clock = new SimClock(time, rate(own.config.driftBound), (rnd() * 2 - 1) * 36_000_000);
    const proc: Proc = { id, clock, worker: undefined as unknown as Worker, partitionedUntil: -1, dead: false, troubles: [] };
    const store = networkStore(shared, time, clock, {
      // Mostly a few ms; in the fault window one message in a hundred is slow, some past the
      // request timeout (DynamoDB's latency tail).
      latency: () => (time.now < faultWindowEnd && rnd() < 0.01 ? rnd() * 2 * own.config.requestTimeoutMs : 1 + rnd() * 20),
      partitioned: () => time.now < proc.partitionedUntil,
      // Network faults end with the fault window: after it the cluster must settle.
      lostReply: () => (time.now < faultWindowEnd ? 0.01 : 0),
      random: rnd,
      timeoutMs: own.config.requestTimeoutMs,
      ...(cloud ? { cloud } : {}),
    });
    const judged = overrides.judgeByOwnSettings ? withoutPublishedSettings(store) : store;
    const record = overrides.record;
    const trace = overrides.trace ?? record;
    const logger = trace && {
      info: (m: string, f?: object) => trace(`${Math.round(time.now)} ${id} INFO ${m} ${JSON.stringify(f)}`),
      warn: (m: string, f?: object) => trace(`${Math.round(time.now)} ${id} WARN ${m} ${JSON.stringify(f)}`),
      error: (m: string, f?: object) => trace(`${Math.round(time.now)} ${id} ERROR ${m} ${JSON.stringify(f)}`),
    };
    const bell = bells?.for(id, clock, () => time.now < proc.partitionedUntil);
    const worker = new Worker({
      ...own.options,
      store: record ? recorded(judged, (line) => record(`${time.now} ${id} ${line}`)) : judged,
      clock,
      random: rnd,
      nodeId: id,
      capacity: 100,
      doorbell: (record && bell ? recordedBell(bell, (line) => record(`${time.now} ${id} ${line}`)) : bell) ?? false,
      ...(logger ? { logger } : {}),
    });
    if (record) {
      const emit = worker.emit.bind(worker) as (event: string, ...args: unknown[]) => boolean;
      worker.emit = ((event: string, ...args: unknown[]) => {
        record(`${time.now} ${id} event ${event} ${canonical(args)}`);
        return emit(event, ...args);
      }) as typeof worker.emit;
    }
    const begin = (ctx: TaskContext): Run => {
      const run: Run = { node: id, clock, task: ctx.task.id, token: ctx.token, ctx };
      const previous = lastToken.get(run.task) ?? -1;
      if (run.token < previous) violations.push(`t=${time.now}: ${run.task} started on ${id} with token ${run.token} after token ${previous}`);
      lastToken.set(run.task, Math.max(previous, run.token));
      active.add(run);
      return run;
    };
    // A finite task: works for a while, then does its side effect if its lease still holds.
    worker.handle(
      'job',
      async (ctx) => {
        const run = begin(ctx);
        void shared.getTask(run.task).then((t) => {
          if (t?.state === 'done') violations.push(`t=${Math.round(time.now)}: ${run.task} (finite) started on ${id} after its outcome was recorded`);
        });
        try {
          await sleep(clock, jobMs.get(run.task) ?? 1000, ctx.signal);
          // Lease gone but not yet told: wait for the signal rather than count a failure.
          if (!ctx.isValid()) await sleep(clock, Number.MAX_SAFE_INTEGER, ctx.signal);
          effects.set(run.task, [...(effects.get(run.task) ?? []), { proc, token: run.token, at: time.now }]);
          return { token: run.token };
        } finally {
          active.delete(run);
        }
      },
      { mode: 'finite' },
    );
    worker.handle('demo', (ctx) => {
      const run = begin(ctx);
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          active.delete(run);
          resolve();
        }),
      );
    });
    // Config validation refuses such a window, so it is forced into the worker's lease by hand.
    if (overrides.unsafeFenceMs) (worker as unknown as { heartbeat: { lease: { fenceMs: number } } }).heartbeat.lease.fenceMs = overrides.unsafeFenceMs;
    proc.worker = worker;
    procs.push(proc);
    void worker.start().catch((error) => violations.push(`t=${time.now}: ${id} failed to start: ${String(error)}`));
    return proc;
  };

  const runners = (task: string) => {
    const nodes = new Set<string>();
    for (const run of active) {
      if (run.task === task && !run.clock.killed && !run.clock.paused && run.ctx.isValid()) nodes.add(run.node);
    }
    return nodes;
  };

  const warmup = 10_000;
  const window = 40_000;
  const faultWindowEnd = warmup + window + 3 * bound;
  const taskIds = Array.from({ length: taskCount }, (_, i) => `task-${i}`);
  for (const id of taskIds) await shared.createTask({ id, type: 'demo', payload: null }, 'sim');
  await shared.bumpCluster('tasks');
  // Finite tasks: a few from the start, the rest added while the faults happen.
  const effects = new Map<string, Effect[]>();
  const jobMs = new Map<string, number>();
  const jobIds = Array.from({ length: 3 + Math.floor(rnd() * 6) }, (_, i) => `job-${i}`);
  for (const [i, job] of jobIds.entries()) {
    jobMs.set(job, 500 + rnd() * 3 * config.periodMs);
    const add = async () => {
      await shared.createTask({ id: job, type: 'job', payload: null }, 'sim');
      await shared.bumpCluster('tasks');
    };
    if (i < 2) await add();
    else time.schedule(warmup + rnd() * window, () => void add());
  }
  for (let i = 0; i < nodeCount; i++) spawn(`n${i}`);

  // Fault schedule: after a warm-up, 1 to 4 faults spread over the fault window.
  const crashes: Array<{ at: number; node: string; tasks: string[]; recoveredAt?: number }> = [];
  const drains: Array<{ at: number; until: number; node: string; proc: Proc; heldAtStart: number; heldAtEnd?: number }> = [];
  const faultTimes: number[] = [];
  const faultCount = 1 + Math.floor(rnd() * 4);
  for (let f = 0; f < faultCount; f++) {
    const at = warmup + rnd() * window;
    const kind = pick(overrides.kinds ?? (['crash', 'crash', 'pause', 'partition', 'leave'] as const));
    const duration = (0.5 + rnd() * 2.5) * bound;
    faultTimes.push(at);
    time.schedule(at, () => {
      const live = procs.filter((p) => !p.dead && !p.clock.paused && time.now >= p.partitionedUntil);
      if (live.length <= 1) return;
      const victim = pick(live);
      faults.push(`${kind} ${victim.id} at ${Math.round(at)}${kind === 'pause' || kind === 'partition' ? ` for ${Math.round(duration)}` : ''}`);
      victim.troubles.push({ from: time.now, to: kind === 'pause' || kind === 'partition' ? time.now + duration : Number.POSITIVE_INFINITY });
      if (kind === 'crash') {
        // Timed takeovers are of the long-running tasks; a finite one may be done by then (checked at the end).
        crashes.push({ at: time.now, node: victim.id, tasks: victim.worker.runningTasks().filter((t) => !jobMs.has(t)) });
        victim.dead = true;
        victim.clock.killed = true;
        void victim.worker.kill();
        if (rnd() < 0.5) {
          const sameId = rnd() < 0.5;
          time.schedule(time.now + rnd() * bound * 2, () => spawn(sameId ? victim.id : `${victim.id}r${Math.floor(rnd() * 1000)}`));
        }
      } else if (kind === 'leave') {
        victim.dead = true;
        void victim.worker.stop().then(() => (victim.clock.killed = true));
        time.schedule(time.now + rnd() * bound, () => spawn(`${victim.id}j${Math.floor(rnd() * 1000)}`));
      } else if (kind === 'drain') {
        // The operator's writes go straight to the table, as `keeper drain` and `undrain` do.
        const drain: (typeof drains)[number] = { at: time.now, until: time.now + duration, node: victim.id, proc: victim, heldAtStart: victim.worker.runningTasks().length };
        drains.push(drain);
        void shared.setDraining(victim.id, true);
        time.schedule(time.now + duration, () => {
          drain.heldAtEnd = victim.worker.snapshot().tasks.length;
          void shared.setDraining(victim.id, false);
        });
      } else if (kind === 'pause') {
        victim.clock.pausedUntil = time.now + duration;
      } else {
        victim.partitionedUntil = time.now + duration;
      }
    });
  }

  const check = () => {
    for (const task of taskIds) {
      const nodes = runners(task);
      if (nodes.size > 1) violations.push(`t=${Math.round(time.now)}: ${task} runs on ${[...nodes].join(' and ')} at once`);
    }
    for (const crash of crashes) {
      if (crash.recoveredAt === undefined && crash.tasks.every((t) => runners(t).size === 1)) crash.recoveredAt = time.now;
    }
  };

  // The nodes' first requests are scheduled from promise continuations, which run only once
  // this function yields: without `warmUp` that is after the first timer, the first fault's,
  // so every node starts at that fault's time and the fault meets a node that has not joined.
  // The default schedules keep that (their digests are the refactoring oracle); drain
  // schedules need nodes that have settled.
  if (overrides.warmUp) await new Promise<void>((resolve) => setImmediate(resolve));
  await time.run(faultWindowEnd + 3 * bound, check);

  for (const crash of crashes) {
    const isolated = faultTimes.every((t) => t === crash.at || Math.abs(t - crash.at) > 2 * bound);
    if (!isolated) continue;
    if (crash.recoveredAt === undefined) violations.push(`crash of ${crash.node} at ${Math.round(crash.at)}: tasks never taken over`);
    else if (crash.recoveredAt - crash.at > bound) violations.push(`crash of ${crash.node} at ${Math.round(crash.at)}: takeover took ${Math.round(crash.recoveredAt - crash.at)} ms > bound ${bound}`);
  }
  // A drain no other fault overlapped, long enough for a few passes, leaves its node empty.
  const isolatedDrains = drains.filter((d) => faultTimes.every((t) => t === d.at || t > d.until || t < d.at - 2 * bound));
  for (const drain of isolatedDrains) {
    if (drain.proc.dead || drain.heldAtEnd === undefined) continue;
    if (drain.heldAtEnd > 0) violations.push(`drain of ${drain.node} at ${Math.round(drain.at)}: still held ${drain.heldAtEnd} tasks when it was lifted`);
  }
  for (const task of taskIds) {
    const nodes = runners(task);
    if (nodes.size !== 1) violations.push(`end: ${task} runs on ${nodes.size} nodes`);
  }
  for (const job of jobIds) {
    const item = await shared.getTask(job);
    if (item?.state !== 'done') violations.push(`end: finite ${job} is ${item?.state ?? 'missing'}, not done`);
    const done = effects.get(job) ?? [];
    for (let i = 1; i < done.length; i++) {
      const [first, again] = [done[i - 1]!, done[i]!];
      const excused = first.proc.troubles.some((x) => x.from <= again.at && x.to >= first.at);
      if (!excused) violations.push(`finite ${job}: side effect on ${first.proc.id} at ${Math.round(first.at)} (token ${first.token}), again on ${again.proc.id} at ${Math.round(again.at)} (token ${again.token}), with no fault of ${first.proc.id} in between`);
    }
  }
  const stored = new Set<string>();
  for (let cursor: string | undefined, first = true; first || cursor; first = false) {
    const page = await shared.listTasks(1000, cursor);
    for (const t of page.items) stored.add(t.id);
    cursor = page.cursor;
  }
  const created = [...taskIds, ...jobIds];
  if (stored.size !== created.length || created.some((t) => !stored.has(t))) violations.push(`end: ${stored.size} tasks in the table, ${created.length} created`);

  for (const p of procs) {
    p.clock.killed = true;
    void p.worker.kill();
  }
  return {
    seed,
    nodes: nodeCount,
    tasks: taskCount,
    faults,
    violations,
    takeoversMs: crashes.filter((c) => c.recoveredAt !== undefined).map((c) => c.recoveredAt! - c.at),
    boundMs: bound,
    finite: { tasks: jobIds.length, effects: [...effects.values()].reduce((n, e) => n + e.length, 0), repeated: [...effects.values()].reduce((n, e) => n + Math.max(0, e.length - 1), 0) },
    ...(cloud ? { cloud: { ...cloud.stats, indexLagMs: Math.round(indexLagMs) } } : {}),
    ...(drains.length > 0 ? { drains: isolatedDrains.map((d) => ({ node: d.node, heldAtStart: d.heldAtStart, heldAtEnd: d.heldAtEnd ?? -1 })) } : {}),
  };
}

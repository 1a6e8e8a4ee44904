import type { CloudSettings } from '../support/cloud-model.js';
import type { FaultKind, NetRates } from './fault-log.js';
import { SeededRandom } from './seeded-random.js';

/**
 * The seeded fault schedule: what happens to which worker slot, when and for how long, all
 * decided before anything starts, so that a seed names a run and nonsense (more faults than
 * the time allows) is refused up front.
 *
 * Times are milliseconds after the moment every initial worker has joined ("ready").
 * Rules the plan keeps, and why:
 * - At most `maxDown` slots are out at once (a minority), so live nodes always remain to
 *   detect, take over and act as witnesses.
 * - A store outage is exclusive: no worker fault's effect (the fault itself, plus the
 *   failover bound for its tasks to move) overlaps it or the bound after the restart, so
 *   every takeover time is measured with the store up and can be compared with the
 *   documented bound, and whatever is declared dead around an outage can be judged on its own.
 * - Outages, like network-error windows, never overlap one another.
 * - Every fault ends, and the failover bound has passed after it, before the quiet tail at
 *   the end, in which the cluster must converge to one running owner per task.
 */
export interface ScheduleTiming {
  boundMs: number;
  driftBound: number;
  /** How long a restart of DynamoDB Local may take (planned for, not measured). */
  storeRestartMs: number;
  /**
   * The longest stall (a short SIGSTOP: what a handler that blocks the event loop does to a
   * node) after which the node's next heartbeat still lands before anyone may declare it dead.
   */
  stallMaxMs: number;
}

export type WorkerFaultKind = 'kill' | 'pause' | 'stall' | 'partition' | 'term' | 'stubborn-term';
export const workerFaultKinds: readonly WorkerFaultKind[] = ['kill', 'pause', 'stall', 'partition', 'term', 'stubborn-term'];
export type TimedKind = Exclude<FaultKind, 'clock'>;
/**
 * The default mix. Its order is part of every seed's schedule (the shuffle draws over it), so
 * a new kind is opt-in (`--kinds`) and appended to `allKinds` only: every existing seed, the
 * CI run's included, plans exactly what it planned before.
 */
export const defaultKinds: readonly TimedKind[] = ['kill', 'pause', 'stall', 'partition', 'term', 'net', 'outage'];
/**
 * Every kind, opt-in ones after the default mix. `stubborn-term`: a SIGTERM to a worker
 * started with slow demo handlers (some ignore their signal for longer than its short leave
 * timeout): it hands the other tasks over at once, keeps beating up to its leave timeout,
 * then stops without marking itself gone, and failover takes the stuck tasks.
 */
export const allKinds: readonly TimedKind[] = [...defaultKinds, 'stubborn-term'];

export type PlannedFault =
  | {
      id: number;
      kind: 'kill' | 'term' | 'stubborn-term';
      atMs: number;
      slot: number;
      /** The replacement starts this long after the kill or the SIGTERM. */
      replaceAfterMs: number;
      /** The replacement takes the victim's node id (the id-reuse path) instead of a fresh one. */
      reuseId: boolean;
    }
  | { id: number; kind: 'pause' | 'stall' | 'partition'; atMs: number; slot: number; durationMs: number }
  | {
      id: number;
      kind: 'net';
      atMs: number;
      slots: number[];
      durationMs: number;
      rates: NetRates;
      /** What Amazon DynamoDB does on top, for these slots meanwhile: index lag, partial batch reads, per-partition throttling, lost transactions in progress. */
      cloud: Required<Pick<CloudSettings, 'unprocessedShare' | 'partitionWriteUnits' | 'partitions' | 'indexLagMs' | 'transactionInProgressMs' | 'slowShare' | 'slowMs'>>;
    }
  | { id: number; kind: 'outage'; atMs: number; downMs: number };

export interface ClockSkew {
  rate: number;
  offsetMs: number;
}

export interface Plan {
  seed: number;
  faultsPerKind: number;
  faults: PlannedFault[];
  /** Clock of the n-th worker process spawned (initial workers first, then replacements). */
  clocks: ClockSkew[];
  /** Everything has settled by then; the final snapshot follows the quiet tail. */
  lastEffectMs: number;
  maxDown: number;
}

export class ScheduleError extends Error {
  override name = 'ScheduleError';
}

const joinAllowanceMs = 2000;
/** After the last effect: time for the final round of rebalancing before the snapshot. */
export const quietTailMs = 4000;

interface Interval {
  start: number;
  end: number;
}
const overlaps = (a: Interval, b: Interval) => a.start < b.end && b.start < a.end;

/**
 * The plan for exactly `faultsPerKind`, or by default as many per kind as fit into 70 % of
 * the run (then stretched over all of it), so that the cluster also spends time in steady
 * state between faults, where rebalancing and convergence are tested too.
 */
export function planSchedule(input: { seed: number; workers: number; seconds: number; faultsPerKind?: number; kinds?: readonly TimedKind[] }, timing: ScheduleTiming): Plan {
  const kinds = input.kinds ?? defaultKinds;
  if (input.faultsPerKind !== undefined) {
    const plan = tryPlan(input.seed, input.workers, input.seconds, input.faultsPerKind, timing, kinds);
    if (plan) return plan;
    const need = minimumSeconds(input.seed, input.workers, input.faultsPerKind, timing, kinds);
    throw new ScheduleError(
      `${input.faultsPerKind} faults of each kind do not fit into --seconds ${input.seconds} with a failover bound of ${(timing.boundMs / 1000).toFixed(2)} s; ` +
        `they need about --seconds ${need}, or use fewer --faults`,
    );
  }
  const packed = Math.max(1, Math.floor(input.seconds * 0.7));
  let lo = 0;
  let hi = 1;
  while (tryPlan(input.seed, input.workers, packed, hi, timing, kinds)) {
    lo = hi;
    hi *= 2;
    if (hi > 100_000) break;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (tryPlan(input.seed, input.workers, packed, mid, timing, kinds)) lo = mid;
    else hi = mid;
  }
  if (lo === 0) lo = tryPlan(input.seed, input.workers, input.seconds, 1, timing, kinds) ? 1 : 0;
  if (lo === 0) {
    throw new ScheduleError(
      `--seconds ${input.seconds} is too short for even one fault of each kind with a failover bound of ${(timing.boundMs / 1000).toFixed(2)} s; ` +
        `use --seconds ${minimumSeconds(input.seed, input.workers, 1, timing, kinds)} or more`,
    );
  }
  return tryPlan(input.seed, input.workers, input.seconds, lo, timing, kinds)!;
}

function minimumSeconds(seed: number, workers: number, faultsPerKind: number, timing: ScheduleTiming, kinds: readonly TimedKind[]): number {
  let s = 10;
  while (!tryPlan(seed, workers, s, faultsPerKind, timing, kinds)) s = Math.ceil(s * 1.1);
  // Tighten to the second.
  let lo = Math.floor(s / 1.1);
  while (s - lo > 1) {
    const mid = Math.floor((lo + s) / 2);
    if (tryPlan(seed, workers, mid, faultsPerKind, timing, kinds)) s = mid;
    else lo = mid;
  }
  return s;
}

function tryPlan(seed: number, workers: number, seconds: number, n: number, timing: ScheduleTiming, kinds: readonly TimedKind[]): Plan | undefined {
  const rng = new SeededRandom(seed);
  const B = timing.boundMs;
  const maxDown = Math.max(1, Math.floor((workers - 1) / 2));
  const start = B; // tasks claimed and spread out first
  const end = seconds * 1000 - quietTailMs;
  if (end <= start) return undefined;

  const order = rng.shuffle(kinds.flatMap((kind) => Array.from({ length: n }, () => kind)));
  const outages: Interval[] = [];
  const nets: Interval[] = [];
  const effects: Interval[] = []; // worker faults incl. their failover time; outages keep clear of them
  const busy: Array<Interval & { slot: number }> = [];
  const faults: PlannedFault[] = [];
  /** How long after its start each fault's effect lasts (see the rules above). */
  const effectOf = new Map<PlannedFault, number>();
  let lastEffect = start;

  for (const [i, kind] of order.entries()) {
    // Every draw happens before placement so that where a fault lands never changes what the
    // later faults draw: one seed, one schedule.
    // Packed as early as the rules allow, holes filled; stretched to the run's length below.
    const nominal = start;
    const replaceAfterMs = rng.between(0.2, 1.2) * B;
    const reuseId = rng.chance(0.5);
    const pauseMs = rng.between(1.05, 1.4) * B; // longer than the bound: the zombie case
    const stallMs = Math.max(10, rng.between(0.05, 1) * timing.stallMaxMs); // short: a blocked event loop, never a reason to declare
    const partitionMs = rng.between(0.3, 1.3) * B; // some heal before detection, most after
    const netMs = rng.between(0.5, 1.5) * B;
    const downMs = rng.between(1.05, 1.25) * B;
    const rates: NetRates = { throttle: round3(rng.between(0.02, 0.1)), error500: round3(rng.between(0.02, 0.1)), dropReply: round3(rng.between(0.02, 0.1)) };
    // A few partitions at a low write rate: a takeover's moves throttle bystanders' heartbeats.
    const cloud = {
      unprocessedShare: round3(rng.between(0.05, 0.3)),
      partitionWriteUnits: Math.round(rng.between(100, 400)),
      partitions: rng.int(2, 8),
      indexLagMs: Math.round(rng.between(100, 2000)),
      transactionInProgressMs: Math.round(rng.between(200, 2000)),
      // The latency tail: a few requests in a hundred held up to a second, many past the timeout.
      slowShare: round3(rng.between(0.01, 0.05)),
      slowMs: Math.round(rng.between(200, 1000)),
    };
    const netSize = rng.int(1, workers);
    const slotDraw = rng.next();
    const netSlotsOrder = rng.shuffle(Array.from({ length: workers }, (_, s) => s));
    const id = i + 1;

    if (kind === 'outage') {
      const pre = 1000;
      // After the restart a full bound of quiet: a restarted DynamoDB Local answers slowly at
      // first and every node has to renew and resume; a fault in that shadow would be
      // measured against a cluster that is still recovering.
      const span = (t: number): Interval => ({ start: t - pre, end: t + downMs + timing.storeRestartMs + B });
      const t = earliest(nominal, (t) => {
        const w = span(t);
        // Outages keep a bound's distance from each other: the cluster recovers in between.
        const blocker = [...effects, ...nets].find((x) => overlaps(x, w)) ?? outages.find((x) => overlaps({ start: x.start - B, end: x.end + B }, w));
        return blocker ? blocker.end + pre + B : undefined;
      });
      const w = span(t);
      outages.push(w);
      const f: PlannedFault = { id, kind, atMs: t, downMs };
      faults.push(f);
      effectOf.set(f, w.end - t);
      lastEffect = Math.max(lastEffect, w.end);
      continue;
    }
    if (kind === 'net') {
      const t = earliest(nominal, (t) => {
        const w = { start: t, end: t + netMs };
        const blocker = [...outages, ...nets].find((x) => overlaps(x, w));
        return blocker?.end;
      });
      nets.push({ start: t, end: t + netMs });
      const f: PlannedFault = { id, kind, atMs: t, durationMs: netMs, rates, cloud, slots: netSlotsOrder.slice(0, netSize).sort((a, b) => a - b) };
      faults.push(f);
      effectOf.set(f, netMs);
      lastEffect = Math.max(lastEffect, t + netMs);
      continue;
    }
    const durationMs = kind === 'pause' ? pauseMs : kind === 'stall' ? stallMs : partitionMs;
    const replaced = kind === 'kill' || kind === 'term' || kind === 'stubborn-term';
    const busyMs = (replaced ? replaceAfterMs : durationMs) + joinAllowanceMs;
    // A stubborn leave keeps its stuck tasks up to its leave timeout; failover takes them a bound later.
    const effectMs = Math.max(busyMs, kind === 'term' ? 3000 : kind === 'stubborn-term' ? stubbornLeaveTimeoutMs(B) + B + 1000 : B + 1000);
    const freeSlots = (t: number) => {
      const b = { start: t, end: t + busyMs };
      const taken = busy.filter((x) => overlaps(x, b));
      if (taken.length >= maxDown) return [];
      const takenSlots = new Set(taken.map((x) => x.slot));
      return Array.from({ length: workers }, (_, s) => s).filter((s) => !takenSlots.has(s));
    };
    const t = earliest(nominal, (t) => {
      const e = { start: t, end: t + effectMs };
      const blocker = outages.find((x) => overlaps(x, e));
      if (blocker) return blocker.end;
      if (freeSlots(t).length > 0) return undefined;
      // The next moment a slot frees up.
      const ends = busy.map((x) => x.end).filter((x) => x > t);
      return ends.length > 0 ? Math.min(...ends) : t + 1000;
    });
    const slots = freeSlots(t);
    const slot = slots[Math.floor(slotDraw * slots.length)]!;
    busy.push({ start: t, end: t + busyMs, slot });
    effects.push({ start: t, end: t + effectMs });
    lastEffect = Math.max(lastEffect, t + effectMs);
    const f: PlannedFault =
      kind === 'kill' || kind === 'term' || kind === 'stubborn-term' ? { id, kind, atMs: t, slot, replaceAfterMs, reuseId } : { id, kind, atMs: t, slot, durationMs };
    faults.push(f);
    effectOf.set(f, effectMs);
  }

  if (lastEffect > end) return undefined;
  // Stretch the packed schedule over the whole run. Scaling every start time away from
  // `start` by s >= 1 while keeping durations can only pull intervals apart, so every rule
  // above still holds.
  const s = lastEffect > start ? (end - start) / (lastEffect - start) : 1;
  lastEffect = start;
  for (const f of faults) {
    f.atMs = start + (f.atMs - start) * s;
    lastEffect = Math.max(lastEffect, f.atMs + effectOf.get(f)!);
  }
  faults.sort((a, b) => a.atMs - b.atMs);
  faults.forEach((f, index) => (f.id = index + 1));
  const replacements = faults.filter((f) => f.kind === 'kill' || f.kind === 'term' || f.kind === 'stubborn-term').length;
  return { seed, faultsPerKind: n, faults, clocks: planClocks(rng, workers + replacements + 32, n, timing.driftBound), lastEffectMs: lastEffect, maxDown };
}

/**
 * A `stubborn-term` victim's `--leave-timeout-ms`: a quarter bound, so the leave ends (and
 * failover of its stuck tasks begins) well inside the fault's planned effect.
 */
export const stubbornLeaveTimeoutMs = (boundMs: number) => Math.round(boundMs / 4);

/**
 * Its demo handlers' stop delay, for every `stubbornEvery`-th task it started: longer than the
 * leave timeout plus a bound, so the stuck tasks are still stuck when the worker gives up and
 * exits (the delayed stop is unref'd: it never holds the exit up).
 */
export const stubbornStopDelayMs = (boundMs: number) => stubbornLeaveTimeoutMs(boundMs) + 2 * boundMs;
export const stubbornEvery = 3;

/**
 * The fault a process spawned into `slot` at `atMs` is headed for, if it is a `stubborn-term`:
 * the next kill, term or stubborn-term planned for the slot after that moment (any of them
 * ends the process). The harness gives that process the slow demo handlers and the short leave
 * timeout; every other process runs as in a default run.
 */
export function stubbornTermAhead(plan: Pick<Plan, 'faults'>, slot: number, atMs: number): PlannedFault | undefined {
  const next = plan.faults
    .filter((f) => (f.kind === 'kill' || f.kind === 'term' || f.kind === 'stubborn-term') && f.slot === slot && f.atMs >= atMs)
    .sort((a, b) => a.atMs - b.atMs)[0];
  return next?.kind === 'stubborn-term' ? next : undefined;
}

/** Moves t forward past whatever blocks it; `blocked` returns the next time worth trying. */
function earliest(t: number, blocked: (t: number) => number | undefined): number {
  for (let guard = 0; guard < 100_000; guard++) {
    const next = blocked(t);
    if (next === undefined) return t;
    t = Math.max(next, t + 1);
  }
  throw new Error('schedule placement did not converge');
}

/**
 * Clock faults are per process: a worker runs with a protocol clock that is hours off (both
 * directions) and runs fast or slow, up to exactly the configured drift bound. The first n
 * spawns are always skewed (so n clock faults happen whatever else does), alternating fast,
 * slow and in between; after that about half of the spawns are.
 */
function planClocks(rng: SeededRandom, count: number, n: number, f: number): ClockSkew[] {
  const out: ClockSkew[] = [];
  for (let i = 0; i < count; i++) {
    const skewed = i < n || rng.chance(0.5);
    const style = i % 3;
    const rateDraw = rng.between(1 / f, f);
    const hours = rng.between(1, 12);
    const sign = i % 2 === 0 ? 1 : -1;
    if (!skewed) {
      out.push({ rate: 1, offsetMs: 0 });
      continue;
    }
    const rate = style === 0 ? f : style === 1 ? 1 / f : rateDraw;
    out.push({ rate: round6(rate), offsetMs: Math.round(sign * hours * 3_600_000) });
  }
  return out;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

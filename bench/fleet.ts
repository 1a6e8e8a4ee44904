import { failoverBoundMs, resolveConfig, type KeeperOptions } from '../lib/config.js';
import { CapacityMeter } from './capacity-meter.js';
import { KeeperCluster, keeperRequestLabel } from './keeper-cluster.js';
import { LockCluster, lockCapacity, lockRequestLabel, lockSettings } from './lock-worker.js';
import { RunLedger, waitUntil } from './run-ledger.js';

/**
 * One long-running cluster of either system, seen the same way by every scenario: nodes that
 * run tasks, a ledger of handler starts, a meter on every client, and the two ways a node can
 * go (crash or graceful leave). Trial loops are written once against this.
 */
export interface Fleet {
  readonly system: 'keeper' | 'baseline';
  readonly ledger: RunLedger;
  readonly meter: CapacityMeter;
  readonly tasks: readonly string[];
  /** How long one heartbeat cycle is: kills are placed at a random phase within it. */
  readonly cycleMs: number;
  /** How long to wait at most for a dead node's tasks to run again before calling a trial censored. */
  readonly takeoverTimeoutMs: number;
  start(ids: readonly string[]): Promise<void>;
  /** Running tasks per live node. */
  loads(): Map<string, number>;
  tasksOf(id: string): string[];
  kill(id: string): Promise<number>;
  /** Graceful leave; resolves with the time it was asked to leave, once it has left. */
  stop(id: string): Promise<number>;
  close(): Promise<void>;
  /** Health counters (heartbeat failures, fences, lost leases): non-zero means the store struggled. */
  health(): Record<string, number>;
  /** Heartbeats written so far and how many were due (baseline only: one per held lock per period). */
  heartbeatLedger?(): { done: number; due: number };
}

export class KeeperFleet implements Fleet {
  readonly system = 'keeper';
  readonly ledger = new RunLedger();
  readonly meter = new CapacityMeter(keeperRequestLabel);
  readonly cluster: KeeperCluster;
  readonly cycleMs: number;
  readonly takeoverTimeoutMs: number;

  constructor(endpoint: string, table: string, readonly tasks: readonly string[], readonly settings: KeeperOptions) {
    this.cluster = new KeeperCluster({ endpoint, table, meter: this.meter, ledger: this.ledger, settings });
    const config = resolveConfig(settings);
    this.cycleMs = config.periodMs;
    this.takeoverTimeoutMs = 4 * failoverBoundMs(config);
  }

  start(ids: readonly string[]): Promise<void> {
    return this.cluster.start(ids);
  }

  loads(): Map<string, number> {
    return new Map(this.cluster.ids().map((id) => [id, this.cluster.worker(id).runningTasks().length]));
  }

  tasksOf(id: string): string[] {
    return this.cluster.worker(id).runningTasks();
  }

  kill(id: string): Promise<number> {
    return this.cluster.kill(id);
  }

  stop(id: string): Promise<number> {
    return this.cluster.stop(id);
  }

  close(): Promise<void> {
    return this.cluster.close();
  }

  health(): Record<string, number> {
    const e = this.cluster.events;
    return { 'heartbeat failures': e.heartbeatFailures, 'self-fenced': e.fenced, 'declared dead while alive (zombie)': e.zombies };
  }
}

export class LockFleet implements Fleet {
  readonly system = 'baseline';
  readonly ledger = new RunLedger();
  readonly meter = new CapacityMeter(lockRequestLabel);
  readonly cluster: LockCluster;
  readonly cycleMs = lockSettings.leaseDurationMs;
  readonly takeoverTimeoutMs = 9 * lockSettings.leaseDurationMs;

  constructor(endpoint: string, table: string, readonly tasks: readonly string[], private readonly capacity: number, random: () => number) {
    this.cluster = new LockCluster({ endpoint, table, tasks, ledger: this.ledger, meter: this.meter, random });
  }

  static capacityFor(tasks: number, nodes: number): number {
    return lockCapacity(tasks, nodes);
  }

  async start(ids: readonly string[]): Promise<void> {
    this.cluster.start(ids, this.capacity);
  }

  loads(): Map<string, number> {
    return new Map(this.cluster.ids().map((id) => [id, this.cluster.worker(id).heldCount]));
  }

  tasksOf(id: string): string[] {
    return this.cluster.worker(id).heldTasks();
  }

  async kill(id: string): Promise<number> {
    return this.cluster.kill(id);
  }

  stop(id: string): Promise<number> {
    return this.cluster.stop(id);
  }

  async close(): Promise<void> {
    this.cluster.close();
  }

  health(): Record<string, number> {
    const c = this.cluster.counters();
    return { 'heartbeat failures': c.heartbeatFailures, 'leases lost': c.leasesLost, 'acquire errors (timeouts)': c.acquireErrors };
  }

  private dueSince = performance.now();
  private dueSoFar = 0;

  heartbeatLedger(): { done: number; due: number } {
    // Integrates held locks over time: each is due one heartbeat per period.
    const now = performance.now();
    this.dueSoFar += (this.cluster.heldTotal() * (now - this.dueSince)) / lockSettings.heartbeatPeriodMs;
    this.dueSince = now;
    return { done: this.cluster.counters().heartbeats, due: this.dueSoFar };
  }
}

/**
 * Waits until every task runs on exactly one node and no handler has started for `quietMs`
 * (claims, rebalancing and handovers have stopped). Returns how long that took, or undefined
 * if it did not happen within `timeoutMs`.
 *
 * With `quietCapMs` (used after a replacement joins): keeper's ring diffusion then keeps
 * moving a few tasks a period for 10-20 s, each not running for up to a period while in
 * transit. It is also enough that 99 % of the tasks have run on exactly one node for
 * `quietCapMs`: a kill or leave during that background diffusion is what production sees, and
 * the victim's tasks are whatever it runs at that moment.
 */
export async function settle(fleet: Fleet, quietMs: number, timeoutMs: number, quietCapMs = Number.POSITIVE_INFINITY): Promise<number | undefined> {
  const started = performance.now();
  const total = fleet.tasks.length;
  let mostlySince: number | undefined;
  const ok = await waitUntil(
    () => {
      const now = performance.now();
      const once = fleet.ledger.runningOnce(fleet.tasks);
      if (once === total && now - fleet.ledger.lastStart >= quietMs) return true;
      if (once < 0.99 * total) {
        mostlySince = undefined;
        return false;
      }
      mostlySince ??= now;
      return now - mostlySince >= quietCapMs;
    },
    timeoutMs,
    100,
  );
  return ok ? performance.now() - started : undefined;
}

/**
 * Whether the store keeps up with a fleet: watches it for `windowMs` and returns the evidence
 * if not (tasks not running, health counters moving, lock heartbeats falling behind). Empty
 * means it kept up.
 */
export async function saturationEvidence(fleet: Fleet, windowMs: number): Promise<string[]> {
  const health = fleet.health();
  const beats = fleet.heartbeatLedger?.();
  const before = fleet.meter.read();
  const end = performance.now() + windowMs;
  // Sampled through the window, so heartbeats due follow the number of locks held.
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    fleet.heartbeatLedger?.();
  }
  const evidence: string[] = [];
  // A task being rebalanced is between two runs for up to a period or two: only a task that
  // stays without a runner says the fleet fell behind.
  const graceEnd = performance.now() + 3000;
  while (fleet.ledger.runningOnce(fleet.tasks) < fleet.tasks.length && performance.now() < graceEnd) await new Promise((resolve) => setTimeout(resolve, 100));
  const running = fleet.ledger.runningOnce(fleet.tasks);
  if (running < fleet.tasks.length) evidence.push(`${running} of ${fleet.tasks.length} tasks running`);
  for (const [k, v] of Object.entries(fleet.health())) if (v > (health[k] ?? 0)) evidence.push(`${k}: ${v - (health[k] ?? 0)} in ${windowMs / 1000} s`);
  const after = fleet.heartbeatLedger?.();
  if (beats && after) {
    const done = after.done - beats.done;
    const due = after.due - beats.due;
    // The library renews one period after the previous renewal returned, locks taken together
    // renew in step, and a burst of joiners delays renewals for a few seconds: only fewer than
    // half of the renewals due says the store fell behind (seen at 7-18 % when it did).
    if (done < 0.5 * due) evidence.push(`${Math.round(done)} lock heartbeats written of ${Math.round(due)} due in ${windowMs / 1000} s`);
  }
  if (evidence.length > 0) {
    const latency = fleet.meter.latenciesSince(before).sort((a, b) => a - b);
    if (latency.length > 0) evidence.push(`request latency p50 ${Math.round(latency[Math.floor(latency.length / 2)]!)} ms, p99 ${Math.round(latency[Math.min(latency.length - 1, Math.ceil(latency.length * 0.99) - 1)]!)} ms`);
  }
  return evidence;
}

/** The node whose load is closest to the mean: a typical node, not the luckiest or unluckiest. */
export function typicalNode(fleet: Fleet): { id: string; load: number } {
  const loads = [...fleet.loads()];
  const mean = loads.reduce((sum, [, n]) => sum + n, 0) / Math.max(1, loads.length);
  loads.sort((a, b) => Math.abs(a[1] - mean) - Math.abs(b[1] - mean) || b[1] - a[1]);
  const [id, load] = loads[0]!;
  return { id, load };
}

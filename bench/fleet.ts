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
}

/**
 * Waits until every task runs on exactly one node and no handler has started for `quietMs`
 * (claims, rebalancing and handovers have stopped). Returns how long that took, or undefined
 * if it did not happen within `timeoutMs`.
 */
export async function settle(fleet: Fleet, quietMs: number, timeoutMs: number): Promise<number | undefined> {
  const started = performance.now();
  const ok = await waitUntil(
    () => performance.now() - fleet.ledger.lastStart >= quietMs && fleet.ledger.runningOnce(fleet.tasks) === fleet.tasks.length,
    timeoutMs,
    100,
  );
  return ok ? performance.now() - started : undefined;
}

/** The node whose load is closest to the mean: a typical node, not the luckiest or unluckiest. */
export function typicalNode(fleet: Fleet): { id: string; load: number } {
  const loads = [...fleet.loads()];
  const mean = loads.reduce((sum, [, n]) => sum + n, 0) / Math.max(1, loads.length);
  loads.sort((a, b) => Math.abs(a[1] - mean) - Math.abs(b[1] - mean) || b[1] - a[1]);
  const [id, load] = loads[0]!;
  return { id, load };
}

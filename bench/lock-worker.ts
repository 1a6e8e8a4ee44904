import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import lockClient, { type Lock } from 'dynamodb-lock-client';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import type { CapacityMeter } from './capacity-meter.js';
import { LockClientAdapter, type PutKinds } from './lock-client-adapter.js';
import type { RunLedger } from './run-ledger.js';

/**
 * The baseline: the same singleton tasks, done as one lease lock per task with
 * dynamodb-lock-client, settings from its README's FailOpen example (leaseDurationMs 10 000,
 * heartbeatPeriodMs 3 000, default retryCount and trustLocalTime).
 *
 * Worker design (the library leaves it to the user):
 * - a worker runs a task while it holds the task's lock, and holds at most `capacity` locks;
 *   capacity is ceil(tasks / workers) * 1.2, so the survivors can absorb a dead worker's share;
 * - while below capacity it keeps one acquireLock outstanding for every task it does not hold.
 *   On a held lock, acquireLock reads it, waits a full lease, and succeeds only if the lock did
 *   not change meanwhile (no heartbeat): that is how the library detects an expired lock
 *   without trusting clocks. A failed attempt is started again at once, so a dead owner's lock
 *   is taken about one to two leases after its last heartbeat;
 * - a lock won while already at capacity is released at once (FailOpen release: lease 1 ms);
 * - first attempts are spread at random over one lease (see initialSpreadMs);
 * - a failed heartbeat (the lock emits 'error' and stops renewing) counts as a lost lease: the
 *   task stops, and acquiring starts over;
 * - other request errors (timeouts under load) retry after a jittered second;
 * - a crash stops its heartbeats and all its activity without releasing anything.
 */
export const lockSettings = { leaseDurationMs: 10_000, heartbeatPeriodMs: 3_000 } as const;
/**
 * Per-request timeout of the baseline's client. aws-sdk v2, which the library was written
 * for, waited up to two minutes; a request slower than one lease is of no use to a lock, so
 * the lease is the limit here.
 */
export const lockRequestTimeoutMs = lockSettings.leaseDurationMs;

/** What each of the lock client's requests is for (index.js of v0.7.3). */
export function lockRequestLabel(operation: string, input: Record<string, unknown>): string {
  if (operation === 'GetItem') return 'read lock (GetItem)';
  if (operation !== 'PutItem') return `other (${operation})`;
  const condition = String(input['ConditionExpression'] ?? '');
  const item = input['Item'] as { leaseDurationMs?: unknown } | undefined;
  if (condition.includes(' or (guid')) return 'take expired lock (PutItem)';
  if (condition.startsWith('attribute_not_exists')) return 'acquire free lock (PutItem)';
  return item?.leaseDurationMs === 1 ? 'release (PutItem)' : 'heartbeat (PutItem)';
}

export interface LockWorkerStats {
  leasesLost: number;
  acquireErrors: number;
  releasedOverCapacity: number;
}

export interface LockWorkerOptions {
  id: string;
  endpoint: string;
  table: string;
  tasks: readonly string[];
  capacity: number;
  ledger: RunLedger;
  meter?: CapacityMeter;
  random?: () => number;
  /**
   * First attempts are spread at random over this long (default: one lease). An attempt on a
   * held lock waits a lease anyway, so spreading costs no takeover time, and a starting fleet
   * does not send workers x tasks requests at once.
   */
  initialSpreadMs?: number;
}

export class LockWorker {
  readonly id: string;
  readonly stats: LockWorkerStats = { leasesLost: 0, acquireErrors: 0, releasedOverCapacity: 0 };
  private readonly client: DynamoDBClient;
  readonly adapter: LockClientAdapter;
  private readonly locks: InstanceType<typeof lockClient.FailOpen>;
  private readonly held = new Map<string, Lock>();
  private readonly pending = new Set<string>();
  private phase: 'running' | 'stopping' | 'dead' = 'running';
  private readonly random: () => number;

  constructor(private readonly options: LockWorkerOptions) {
    this.id = options.id;
    this.random = options.random ?? Math.random;
    this.client = createDynamoClient({ endpoint: options.endpoint, requestTimeoutMs: lockRequestTimeoutMs });
    options.meter?.attach(this.client);
    this.adapter = new LockClientAdapter(documentClient(this.client));
    this.locks = new lockClient.FailOpen({
      dynamodb: this.adapter,
      lockTable: options.table,
      partitionKey: 'id',
      owner: options.id,
      ...lockSettings,
    });
  }

  start(): void {
    const spread = this.options.initialSpreadMs ?? lockSettings.leaseDurationMs;
    if (spread <= 0) {
      this.refill();
      return;
    }
    for (const task of this.options.tasks) {
      this.pending.add(task);
      setTimeout(() => {
        this.pending.delete(task);
        if (this.phase === 'running' && this.belowCapacity() && !this.held.has(task)) this.attempt(task);
      }, this.random() * spread);
    }
  }

  get heldCount(): number {
    return this.held.size;
  }

  heldTasks(): string[] {
    return [...this.held.keys()];
  }

  get puts(): PutKinds {
    return this.adapter.puts;
  }

  private belowCapacity(): boolean {
    return this.held.size < this.options.capacity;
  }

  /** An acquire attempt for every task neither held nor already being attempted. */
  private refill(): void {
    if (this.phase !== 'running' || !this.belowCapacity()) return;
    for (const task of this.options.tasks) if (!this.held.has(task) && !this.pending.has(task)) this.attempt(task);
  }

  private attempt(task: string): void {
    this.pending.add(task);
    this.locks.acquireLock(task, (error, lock) => {
      this.pending.delete(task);
      if (this.phase === 'dead') return;
      if (error || !lock) {
        if (this.phase !== 'running' || !this.belowCapacity()) return;
        if (error?.code === 'FailedToAcquireLock') {
          this.attempt(task);
        } else {
          this.stats.acquireErrors += 1;
          setTimeout(() => {
            if (this.phase === 'running' && this.belowCapacity() && !this.held.has(task) && !this.pending.has(task)) this.attempt(task);
          }, 500 + this.random() * 1000);
        }
        return;
      }
      lock.on('error', () => this.lose(task, lock));
      if (this.phase !== 'running' || !this.belowCapacity()) {
        this.stats.releasedOverCapacity += 1;
        lock.release(() => {});
        return;
      }
      this.held.set(task, lock);
      this.options.ledger.started(task, this.id);
    });
  }

  private lose(task: string, lock: Lock): void {
    if (this.held.get(task) !== lock || this.phase === 'dead') return;
    this.held.delete(task);
    this.stats.leasesLost += 1;
    this.options.ledger.stopped(task, this.id);
    this.refill();
  }

  /** A crash: no heartbeat, no release, no further request. Returns the kill time. */
  kill(): number {
    const at = performance.now();
    this.phase = 'dead';
    this.adapter.sever();
    for (const [task, lock] of this.held) {
      clearTimeout(lock.heartbeatTimeout);
      this.options.ledger.stopped(task, this.id, at);
    }
    this.held.clear();
    this.client.destroy();
    return at;
  }

  /** A graceful leave: stop every task, then release its lock. Resolves when all releases are answered. */
  async stop(): Promise<void> {
    this.phase = 'stopping';
    const held = [...this.held];
    this.held.clear();
    await Promise.all(
      held.map(([task, lock]) => {
        this.options.ledger.stopped(task, this.id);
        return new Promise<void>((resolve) => lock.release(() => resolve()));
      }),
    );
    this.phase = 'dead';
    this.adapter.sever();
    this.client.destroy();
  }
}

/** Capacity of each baseline worker: its share plus 20 %, so the survivors can absorb a dead worker's share. */
export function lockCapacity(tasks: number, workers: number): number {
  return Math.ceil((Math.ceil(tasks / workers) * 1.2));
}

/** Several baseline workers of one run, sharing a ledger and a meter. */
export class LockCluster {
  private readonly workers = new Map<string, LockWorker>();
  /** Counters of workers that are gone, so totals survive kills and replacements. */
  private readonly retired: LockWorkerStats & PutKinds = { leasesLost: 0, acquireErrors: 0, releasedOverCapacity: 0, heartbeats: 0, heartbeatFailures: 0, acquirePuts: 0, releases: 0 };

  constructor(private readonly base: Omit<LockWorkerOptions, 'id' | 'capacity'>) {}

  start(ids: readonly string[], capacity: number, initialSpreadMs?: number): void {
    for (const id of ids) {
      const worker = new LockWorker({ ...this.base, id, capacity, ...(initialSpreadMs !== undefined ? { initialSpreadMs } : {}) });
      this.workers.set(id, worker);
      worker.start();
    }
  }

  ids(): string[] {
    return [...this.workers.keys()];
  }

  worker(id: string): LockWorker {
    return this.workers.get(id)!;
  }

  heldTotal(): number {
    let n = 0;
    for (const w of this.workers.values()) n += w.heldCount;
    return n;
  }

  busiest(): string {
    let best = '';
    let most = -1;
    for (const [id, w] of this.workers) if (w.heldCount > most) [best, most] = [id, w.heldCount];
    return best;
  }

  /** Totals over every worker this cluster ever ran. */
  counters(): LockWorkerStats & PutKinds {
    const sum = { ...this.retired };
    for (const w of this.workers.values()) this.add(sum, w);
    return sum;
  }

  private add(sum: LockWorkerStats & PutKinds, w: LockWorker): void {
    const counts: LockWorkerStats & PutKinds = { ...w.stats, ...w.puts };
    for (const key of Object.keys(sum) as Array<keyof typeof sum>) sum[key] += counts[key];
  }

  kill(id: string): number {
    const w = this.workers.get(id)!;
    const at = w.kill();
    this.add(this.retired, w);
    this.workers.delete(id);
    return at;
  }

  async stop(id: string): Promise<number> {
    const w = this.workers.get(id)!;
    const at = performance.now();
    await w.stop();
    this.add(this.retired, w);
    this.workers.delete(id);
    return at;
  }

  close(): void {
    for (const id of [...this.workers.keys()]) this.kill(id);
  }
}

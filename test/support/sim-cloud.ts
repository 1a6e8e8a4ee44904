import { StoreUnavailableError, type NodeItem, type NodesRead, type Store } from '../../lib/store/store.js';
import type { VirtualTime } from './sim.js';

/**
 * What Amazon DynamoDB does and the in-memory store does not, for the simulator: the same
 * behaviours the fault proxy models in front of DynamoDB Local (cloud-model.ts), at the level
 * of the Store interface, on virtual time, seeded. One instance is the cloud of one schedule,
 * shared by every node's view of the store.
 *
 * - Index lag: an index query (tasks by owner, free tasks, members, ring neighbours) may
 *   answer as the index stood up to `indexLagMs` ago: the same query within that window
 *   gets the same, older answer.
 * - Partial batch reads: each key of a node read is left unprocessed with probability
 *   `unprocessedShare`; the store asks again after a backoff (as DynamoStore does), up to
 *   three requests, and reports keys still unread, and which request read each node.
 * - Per-partition throttling: each item takes `partitionWritesPerSecond` writes a second
 *   (a token bucket); beyond it, the write is refused unapplied (StoreUnavailableError, as
 *   DynamoStore reports throttling that outlasted its retries). A transaction takes one from
 *   each of its items, all or none.
 */
export interface CloudConditions {
  indexLagMs: number;
  unprocessedShare: number;
  partitionWritesPerSecond: number;
  random: () => number;
}

const indexReads = new Set(['tasksOwnedBy', 'unownedTasks', 'listMembers', 'ringSuccessors', 'ringPredecessors']);

/** The item keys a write touches, for throttling (its first argument names the item). */
function writtenKeys(operation: string, args: unknown[]): string[] | undefined {
  switch (operation) {
    case 'heartbeat':
      return [`node#${(args[0] as { id: string }).id}`];
    case 'joinNode':
      return [`node#${(args[0] as NodeItem).id}`];
    case 'declareDead':
    case 'markLeaving':
    case 'markLeft':
    case 'removeNode':
    case 'notify':
    case 'notifyNeighbours':
      return [`node#${String(args[0])}`];
    case 'bumpCluster':
      return ['cluster'];
    case 'moveTask':
    case 'updateTask':
    case 'deleteTask':
    case 'requestRelease':
    case 'updatePayload':
      return [`task#${String(args[0])}`];
    case 'moveTasks':
      return (args[0] as Array<{ id: string }>).map((m) => `task#${m.id}`);
    default:
      return undefined;
  }
}

export class SimCloud {
  readonly stats = { laggedReads: 0, unprocessedKeys: 0, unreadKeys: 0, throttledWrites: 0 };
  private readonly answers = new Map<string, { until: number; answer: unknown }>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly time: VirtualTime,
    private readonly conditions: CloudConditions,
  ) {}

  /**
   * One call as the cloud serves it, once the request has reached the store. `pause` waits
   * in virtual time (the store's backoff between the requests of one batch read).
   */
  async serve(store: Store, operation: string, args: unknown[], call: () => Promise<unknown>, pause: (ms: number) => Promise<void>): Promise<unknown> {
    if (indexReads.has(operation)) return this.indexRead(operation, args, call);
    if (operation === 'readNodes') return this.readNodes(store, args as Parameters<Store['readNodes']>, pause);
    const keys = writtenKeys(operation, args);
    if (keys && !this.take(keys)) {
      this.stats.throttledWrites += 1;
      throw new StoreUnavailableError(`${operation}: throttled (a partition is over its write rate)`);
    }
    return call();
  }

  private async indexRead(operation: string, args: unknown[], call: () => Promise<unknown>): Promise<unknown> {
    const key = `${operation}(${JSON.stringify(args)})`;
    const seen = this.answers.get(key);
    if (seen && this.time.now < seen.until) {
      this.stats.laggedReads += 1;
      return structuredClone(seen.answer);
    }
    const answer = await call();
    this.answers.set(key, { until: this.time.now + this.conditions.random() * this.conditions.indexLagMs, answer: structuredClone(answer) });
    return answer;
  }

  private async readNodes(store: Store, [ids, options]: Parameters<Store['readNodes']>, pause: (ms: number) => Promise<void>): Promise<NodesRead> {
    const withCluster = options?.cluster !== false;
    let pending = [...new Set(ids)];
    let clusterPending = withCluster;
    const nodes = new Map<string, NodeItem>();
    const rounds = new Map<string, number>();
    let cluster: NodesRead['cluster'];
    for (let round = 1; round <= 3 && (pending.length > 0 || clusterPending); round++) {
      if (round > 1) await pause(20 * 2 ** round * this.conditions.random());
      const held = pending.filter(() => this.conditions.random() < this.conditions.unprocessedShare);
      const holdCluster = clusterPending && this.conditions.random() < this.conditions.unprocessedShare;
      this.stats.unprocessedKeys += held.length + (holdCluster ? 1 : 0);
      const asked = pending.filter((id) => !held.includes(id));
      const read = await store.readNodes(asked, { cluster: clusterPending && !holdCluster });
      for (const [id, node] of read.nodes) {
        nodes.set(id, node);
        if (round > 1) rounds.set(id, round);
      }
      if (clusterPending && !holdCluster) {
        cluster = read.cluster;
        clusterPending = false;
      }
      pending = held;
    }
    this.stats.unreadKeys += pending.length;
    return { nodes, cluster, unread: new Set(pending), rounds };
  }

  /** Takes one write from each item's bucket, or none if one is empty. */
  private take(keys: string[]): boolean {
    const rate = this.conditions.partitionWritesPerSecond;
    const buckets = [...new Set(keys)].map((key) => {
      const bucket = this.buckets.get(key) ?? { tokens: rate, at: this.time.now };
      bucket.tokens = Math.min(rate, bucket.tokens + ((this.time.now - bucket.at) / 1000) * rate);
      bucket.at = this.time.now;
      this.buckets.set(key, bucket);
      return bucket;
    });
    if (buckets.some((b) => b.tokens < 1)) return false;
    for (const bucket of buckets) bucket.tokens -= 1;
    return true;
  }
}

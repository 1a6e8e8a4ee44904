import { createHash } from 'node:crypto';

/**
 * What Amazon DynamoDB does that DynamoDB Local never does, applied by the FaultProxy to the
 * requests it passes on: BatchGetItem leaving keys unprocessed, per-partition write
 * throttling weighted by item size (twice for a transaction's items), transactions that stay
 * in progress after their reply was lost, indexes that lag behind the table, and a latency
 * tail. Seeded through the proxy's random source, each part off unless configured.
 *
 * The limits are AWS's documented ones, scaled down so that a test on one machine reaches
 * them: a partition takes about 1,000 write units a second, a write costs one unit per KB of
 * item (rounded up), a transactional write two; keys of a batch read may come back in
 * UnprocessedKeys whenever a partition is throttled; a transaction's items reject other
 * writes (TransactionConflictException) while it is being recovered.
 */
export interface CloudSettings {
  /** Each key of a BatchGetItem is left unprocessed with this probability. */
  unprocessedShare?: number;
  /** Partition keys a BatchGetItem always leaves unprocessed: a hot partition throttled for good. */
  hotKeys?: (pk: string) => boolean;
  /** Write units a second each partition takes; beyond it, writes to it are throttled. */
  partitionWriteUnits?: number;
  /**
   * How many partitions the table's items are spread over (by a hash of the partition key);
   * without it, each partition key is a partition of its own. A few partitions make a big
   * takeover throttle the heartbeats of bystanders whose items share a partition with its tasks.
   */
  partitions?: number;
  /** How long a transaction whose reply was lost stays in progress, rejecting single writes to its items. */
  transactionInProgressMs?: number;
  /** Index queries answer as of up to this long ago (the same query within it gets the same, older answer). */
  indexLagMs?: number;
  /** Extra latency of each request, in ms. */
  latencyMs?: () => number;
  /**
   * DynamoDB's latency tail (a service-side pause, a retried storage node): this share of
   * requests is held up to `slowMs` before it reaches the table, some past the client's
   * timeout, whose write then lands after the client gave up on it. Used unless `latencyMs` is.
   */
  slowShare?: number;
  slowMs?: number;
}

export interface CloudStats {
  unprocessedKeys: number;
  partitionThrottles: number;
  transactionConflicts: number;
  laggedQueries: number;
}

/** A reply the model gives instead of DynamoDB Local's. */
export interface CannedReply {
  status: number;
  body: string;
}

/** What the proxy does with one request. */
export type Verdict =
  | { reply: CannedReply }
  | {
      /** The body to forward (changed when keys are held back). */
      body: string;
      /** Rewrites the upstream reply's body. */
      after?: (reply: string) => string;
      /** Called if the reply is dropped on the way back (the write landed, the caller never learns). */
      dropped?: () => void;
    };

type Json = Record<string, unknown>;

export const errorBody = (type: string, message: string) => JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message });

const writeOps = new Set(['PutItem', 'UpdateItem', 'DeleteItem']);

/** The partition key of a request's key or item, as DynamoDB JSON ({ pk: { S: '...' } }). */
function pkOf(key: unknown): string | undefined {
  const pk = (key as { pk?: { S?: string } } | undefined)?.pk?.S;
  return typeof pk === 'string' ? pk : undefined;
}

/** The items of a TransactWriteItems request, with the partition key and size of each. */
function transactionItems(request: Json): Array<{ pk: string; bytes: number }> {
  const out: Array<{ pk: string; bytes: number }> = [];
  for (const entry of (request['TransactItems'] as Json[] | undefined) ?? []) {
    const op = Object.values(entry)[0] as Json | undefined;
    const pk = pkOf(op?.['Key'] ?? op?.['Item']);
    if (pk) out.push({ pk, bytes: JSON.stringify(op).length });
  }
  return out;
}

export class CloudModel {
  readonly stats: CloudStats = { unprocessedKeys: 0, partitionThrottles: 0, transactionConflicts: 0, laggedQueries: 0 };
  /** Per partition key: write units left, and when they were counted. */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Partition keys of transactions in progress, until when. */
  private readonly inProgress = new Map<string, number>();
  private readonly indexAnswers = new Map<string, { at: number; reply: string }>();

  constructor(
    public settings: CloudSettings,
    private readonly random: () => number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  latency(): number {
    const { latencyMs, slowShare = 0, slowMs = 0 } = this.settings;
    if (latencyMs) return latencyMs();
    return slowShare > 0 && this.random() < slowShare ? this.random() * slowMs : 0;
  }

  judge(operation: string, raw: string): Verdict {
    let request: Json;
    try {
      request = JSON.parse(raw) as Json;
    } catch {
      return { body: raw };
    }
    if (operation === 'BatchGetItem') return this.batchGet(request, raw);
    if (operation === 'Query' && request['IndexName'] && this.settings.indexLagMs) return this.indexQuery(raw);
    if (writeOps.has(operation)) {
      const pk = pkOf(request['Key'] ?? request['Item']);
      if (pk === undefined) return { body: raw };
      if (this.busy(pk)) {
        this.stats.transactionConflicts += 1;
        return { reply: { status: 400, body: errorBody('TransactionConflictException', 'Transaction is ongoing for the item (modelled).') } };
      }
      if (!this.take([{ pk, units: Math.ceil(raw.length / 1024) }])) return { reply: this.throttled('ProvisionedThroughputExceededException') };
      return { body: raw };
    }
    if (operation === 'TransactWriteItems') {
      const token = typeof request['ClientRequestToken'] === 'string' ? request['ClientRequestToken'] : undefined;
      // The same transaction again, while the lost one is still being applied.
      if (token !== undefined && this.busy(`token#${token}`)) {
        this.stats.transactionConflicts += 1;
        return { reply: { status: 400, body: errorBody('TransactionInProgressException', 'The transaction with the given request token is already in progress (modelled).') } };
      }
      const items = transactionItems(request);
      const reasons = items.map((item) => (this.busy(item.pk) ? { Code: 'TransactionConflict' } : { Code: 'None' }));
      if (reasons.some((r) => r.Code !== 'None')) {
        this.stats.transactionConflicts += 1;
        return { reply: { status: 400, body: cancelled(reasons, 'TransactionConflict') } };
      }
      const units = items.map((item) => ({ pk: item.pk, units: 2 * Math.ceil(item.bytes / 1024) }));
      if (!this.take(units)) {
        this.stats.partitionThrottles += 1;
        const throttledPks = new Set(units.filter((u) => !this.fits(u)).map((u) => u.pk));
        return { reply: { status: 400, body: cancelled(items.map((i) => ({ Code: throttledPks.has(i.pk) ? 'ThrottlingError' : 'None' })), 'ThrottlingError') } };
      }
      return {
        body: raw,
        dropped: () => {
          const until = this.now() + (this.settings.transactionInProgressMs ?? 0);
          if (!this.settings.transactionInProgressMs) return;
          for (const item of items) this.inProgress.set(item.pk, until);
          if (token !== undefined) this.inProgress.set(`token#${token}`, until);
        },
      };
    }
    return { body: raw };
  }

  private busy(pk: string): boolean {
    const until = this.inProgress.get(pk);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.inProgress.delete(pk);
    return false;
  }

  private throttled(type: string): CannedReply {
    this.stats.partitionThrottles += 1;
    return { status: 400, body: errorBody(type, 'The level of configured provisioned throughput for one or more partitions was exceeded (modelled).') };
  }

  /** The partition an item's partition key falls in. */
  private partitionOf(pk: string): string {
    const { partitions } = this.settings;
    return partitions ? `partition#${createHash('md5').update(pk).digest().readUInt32BE(0) % partitions}` : pk;
  }

  /** A partition's token bucket: it holds a second's worth of units and refills at that rate. */
  private bucket(partition: string): { tokens: number; at: number } {
    const limit = this.settings.partitionWriteUnits ?? Number.POSITIVE_INFINITY;
    const now = this.now();
    const bucket = this.buckets.get(partition) ?? { tokens: limit, at: now };
    bucket.tokens = Math.min(limit, bucket.tokens + ((now - bucket.at) / 1000) * limit);
    bucket.at = now;
    this.buckets.set(partition, bucket);
    return bucket;
  }

  private fits(need: { pk: string; units: number }): boolean {
    return this.settings.partitionWriteUnits === undefined || this.bucket(this.partitionOf(need.pk)).tokens >= need.units;
  }

  /** Takes write units from every partition the request writes, or none if one is out of them. */
  private take(needs: Array<{ pk: string; units: number }>): boolean {
    if (this.settings.partitionWriteUnits === undefined) return true;
    const total = new Map<string, number>();
    for (const need of needs) total.set(this.partitionOf(need.pk), (total.get(this.partitionOf(need.pk)) ?? 0) + need.units);
    for (const [partition, units] of total) if (this.bucket(partition).tokens < units) return false;
    for (const [partition, units] of total) this.bucket(partition).tokens -= units;
    return true;
  }

  private batchGet(request: Json, raw: string): Verdict {
    const { unprocessedShare = 0, hotKeys } = this.settings;
    if (unprocessedShare === 0 && !hotKeys) return { body: raw };
    const requestItems = request['RequestItems'] as Record<string, { Keys: unknown[] } & Json>;
    const held: Record<string, { Keys: unknown[] } & Json> = {};
    const forwarded: Record<string, { Keys: unknown[] } & Json> = {};
    for (const [table, spec] of Object.entries(requestItems)) {
      const keep: unknown[] = [];
      const hold: unknown[] = [];
      for (const key of spec.Keys) {
        const pk = pkOf(key) ?? '';
        if (hotKeys?.(pk) || this.random() < unprocessedShare) hold.push(key);
        else keep.push(key);
      }
      this.stats.unprocessedKeys += hold.length;
      if (hold.length > 0) held[table] = { ...spec, Keys: hold };
      if (keep.length > 0) forwarded[table] = { ...spec, Keys: keep };
    }
    if (Object.keys(held).length === 0) return { body: raw };
    // DynamoDB Local refuses a batch with no keys; an answer with every key unprocessed needs no upstream.
    if (Object.keys(forwarded).length === 0) return { reply: { status: 200, body: JSON.stringify({ Responses: {}, UnprocessedKeys: held }) } };
    return {
      body: JSON.stringify({ ...request, RequestItems: forwarded }),
      after: (reply) => {
        const parsed = JSON.parse(reply) as Json;
        const unprocessed = { ...((parsed['UnprocessedKeys'] as Json | undefined) ?? {}) };
        for (const [table, spec] of Object.entries(held)) {
          const before = (unprocessed[table] as { Keys?: unknown[] } | undefined)?.Keys ?? [];
          unprocessed[table] = { ...spec, Keys: [...before, ...spec.Keys] };
        }
        return JSON.stringify({ ...parsed, UnprocessedKeys: unprocessed });
      },
    };
  }

  /** The same index query within the lag window gets the answer it got when the window opened. */
  private indexQuery(raw: string): Verdict {
    const lag = this.settings.indexLagMs ?? 0;
    const seen = this.indexAnswers.get(raw);
    if (seen && this.now() - seen.at < lag) {
      this.stats.laggedQueries += 1;
      return { reply: { status: 200, body: seen.reply } };
    }
    return {
      body: raw,
      after: (reply) => {
        this.indexAnswers.set(raw, { at: this.now(), reply });
        return reply;
      },
    };
  }
}

function cancelled(reasons: Array<{ Code: string }>, code: string): string {
  return JSON.stringify({
    __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
    message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}] (modelled ${code}).`,
    CancellationReasons: reasons,
  });
}

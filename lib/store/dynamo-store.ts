import { randomUUID } from 'node:crypto';
import {
  BatchGetCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { ringKey } from '../protocol/ring.js';
import { keys, newTaskRecord, notified, ownerAttribute, parseCluster, parseNode, parseTask, parseTaskHead, type Warn } from './items.js';
import {
  AmbiguousWriteError,
  maxBatchMove,
  type DrainResult,
  StoreUnavailableError,
  type ClusterItem,
  type HeartbeatInput,
  type HeartbeatResult,
  type MemberEntry,
  type NewTaskRecord,
  type NodeItem,
  type NodeState,
  type NodesRead,
  type Notified,
  type Page,
  type PayloadUpdateResult,
  type SlotRange,
  type Store,
  type TaskHead,
  type TaskItem,
  type TaskOwnership,
  type TaskPatch,
} from './store.js';

type Raw = Record<string, unknown>;

/** How transient DynamoDB failures are retried: attempts and jittered exponential backoff. */
export interface RetryPolicy {
  /** Attempts per call, the first included. */
  attempts: number;
  /** Full-jitter exponential backoff: wait a random time below min(capMs, baseMs * 2^n). */
  baseMs: number;
  capMs: number;
}

/** Options of DynamoStore: the document client, the table, timeouts, retries and where warnings go. */
export interface DynamoStoreOptions {
  client: DynamoDBDocumentClient;
  /**
   * The heartbeat's own client, on connections of its own (createNodeClients): a burst of other
   * requests then cannot hold a beat up in the client's queue. Default: `client`.
   */
  heartbeatClient?: DynamoDBDocumentClient;
  table: string;
  warn?: Warn;
  retry?: Partial<RetryPolicy>;
  /** Per-request deadline, enforced with an abort signal on top of the HTTP handler's timeouts. */
  requestTimeoutMs?: number;
}

/** The table does not exist (or cannot be used): a configuration problem, not an outage. */
export class TableMissingError extends Error {
  override name = 'TableMissingError';
}

/** A reply that came later than a request may last: treated as a timeout (its write may have landed). */
export class LateReplyError extends Error {
  override name = 'LateReplyError';
}

/** A list cursor this store did not hand out (status 400): start again without a cursor. */
export class InvalidCursorError extends Error {
  override name = 'InvalidCursorError';
  readonly status = 400;
}

/** A key condition on the owner index's sort key (one query each). */
type SlotSegment = { op: 'between'; from: string; to: string } | { op: '>=' | '<'; at: string };

/** The queries that read a slot range in ring order: one, or two when it wraps past the end. */
function slotSegments(range: SlotRange | undefined): Array<SlotSegment | undefined> {
  if (!range) return [undefined];
  if (range.from < range.to) return [{ op: 'between', from: range.from, to: range.to }];
  return [{ op: '>=', at: range.from }, ...(range.to > '' ? [{ op: '<' as const, at: range.to }] : [])];
}

type Failure = 'condition' | 'throttled' | 'ambiguous' | 'unavailable' | 'fatal';

/**
 * Items per page of an index query: about 300 KB of typical tasks (DynamoDB stops a page at
 * 1 MB anyway), 26 ms median and 45 ms at most on DynamoDB Local, well within the request
 * timeout. Larger pages keep a node's periodic read of its own tasks to one or two requests
 * however many it runs (2,000 tasks took 20 requests in pages of 100).
 */
const queryPage = 1000;

// Refused without being applied, so safe to retry after a pause. TransactionConflict: the
// item is part of a transaction in progress (a batch move, see moveTasks); TransactionInProgress:
// a transaction with the same client token is still being applied. A request signed with a
// skewed clock (the SDK corrects its offset from the reply) or with credentials that expired
// on the way is refused at the door, and goes through once signed again.
const throttles = new Set([
  'ThrottlingException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'TransactionConflictException',
  'TransactionInProgressException',
  'InvalidSignatureException',
  'ExpiredTokenException',
]);
/** Network errors raised before a request could reach the server: retrying them cannot apply a write twice. */
const undelivered = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function classify(error: unknown): Failure {
  const e = error as { name?: string; code?: string; $fault?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === 'ConditionalCheckFailedException') return 'condition';
  if (e.name && throttles.has(e.name)) return 'throttled';
  if (e.name === 'ResourceNotFoundException' || e.name === 'ValidationException' || e.name === 'AccessDeniedException') return 'fatal';
  const code = e.code ?? (error as { cause?: { code?: string } }).cause?.code;
  if (code && undelivered.has(code)) return 'unavailable';
  // No credentials to sign with: the request never left.
  if (e.name === 'CredentialsUnavailableError' || e.name === 'CredentialsProviderError') return 'unavailable';
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 400 && status < 500 && e.$fault === 'client') return 'fatal';
  // Timeouts, resets, 5xx and anything unrecognised: the write may or may not have landed.
  return 'ambiguous';
}

/**
 * JSON with every object's keys in order: DynamoDB keeps no order among a map's keys, so a
 * result read back may list them otherwise than the one written (and a write of ours that
 * landed must still be recognised as ours).
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

function describe(error: unknown): string {
  const e = error as { name?: string; message?: string; code?: string };
  return [e.name, e.code, e.message].filter(Boolean).join(': ');
}

/**
 * The Store over DynamoDB through lib-dynamodb. Every state change is a conditional write.
 *
 * Retries and ambiguity: a throttled request was not applied and is simply retried with
 * jittered backoff. A timeout or 5xx may have been applied; retrying a compare-and-set after
 * one can then fail its condition *because the first attempt won* (the bug the Kinesis Client
 * Library fixed in its lease taker). So every conditional write carries a predicate that
 * recognises its own effect in the item returned with the failed condition
 * (ReturnValuesOnConditionCheckFailure), and counts that as success. When attempts run out
 * after an ambiguous failure, the caller gets AmbiguousWriteError and re-reads.
 */
export class DynamoStore implements Store {
  private readonly client: DynamoDBDocumentClient;
  private readonly heartbeatClient: DynamoDBDocumentClient;
  private readonly table: string;
  private readonly warn: Warn;
  private readonly retry: RetryPolicy;
  /** The longest a request may last (its reply measured on arrival); a worker's requestTimeoutMs should be no shorter. */
  readonly requestTimeoutMs: number;

  constructor(options: DynamoStoreOptions) {
    this.client = options.client;
    this.heartbeatClient = options.heartbeatClient ?? options.client;
    this.table = options.table;
    this.warn = options.warn ?? (() => {});
    this.retry = { attempts: 3, baseMs: 20, capMs: 400, ...options.retry };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 2000;
  }

  // ---------------------------------------------------------------- plumbing

  // lib-dynamodb's command classes do not unify under one `send` overload; the results are
  // typed at each call site instead.
  private async send<T = { Attributes?: Raw }>(command: object, client = this.client, lateIsSafe = false): Promise<T> {
    // The abort signal is a second line behind the HTTP handler's own timeouts, and it holds
    // for a client made elsewhere too: the safety bound counts on no request, and so no read
    // or write of one, lasting longer than requestTimeoutMs (config.ts, readWindowMs).
    const began = performance.now();
    const out = (await client.send(command as never, { abortSignal: AbortSignal.timeout(this.requestTimeoutMs) })) as T;
    // Timers cannot fire while the event loop is blocked: a reply that task code held up (a
    // CPU-bound handler) may reach us after the deadline without any timer noticing. Measured
    // here, it fails like a timeout (a write may have landed, and is resolved as one whose
    // reply was lost), so that what the bound assumes holds however long the process stalls.
    // Not a heartbeat's: the next value is spaced from the reply, however late (Heartbeat), and
    // refusing it would fence a node whose loop is merely busy (a takeover of a thousand tasks).
    const took = performance.now() - began;
    if (took > this.requestTimeoutMs && !lateIsSafe) throw new LateReplyError(`reply after ${Math.round(took)} ms, past the ${this.requestTimeoutMs} ms a request may last (the event loop was blocked)`);
    return out;
  }

  private backoff(attempt: number): Promise<void> {
    const ceiling = Math.min(this.retry.capMs, this.retry.baseMs * 2 ** (attempt - 1));
    return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
  }

  private unavailable(what: string, error: unknown): Error {
    if (classify(error) === 'fatal') {
      const name = (error as { name?: string }).name;
      if (name === 'ResourceNotFoundException') return new TableMissingError(`table "${this.table}" does not exist; create it with \`keeper init --table ${this.table}\``);
      return new Error(`${what} failed: ${describe(error)}`);
    }
    return new StoreUnavailableError(`${what} failed: ${describe(error)}`);
  }

  /** A read, retried on any transient failure. */
  private async read<T>(what: string, op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (error) {
        const kind = classify(error);
        if (kind === 'fatal' || attempt >= this.retry.attempts) throw this.unavailable(what, error);
        await this.backoff(attempt);
      }
    }
  }

  /**
   * A conditional write. Resolves with the item after the write, or with `{ lost, current }`
   * when the condition failed; `isMine` recognises the write's own effect after an ambiguous
   * attempt.
   */
  private async write(
    what: string,
    op: () => Promise<{ Attributes?: Raw }>,
    isMine: (current: Raw) => boolean,
  ): Promise<{ won: true; item: Raw | undefined } | { won: false; current: Raw | undefined }> {
    let ambiguous = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await op();
        return { won: true, item: out.Attributes };
      } catch (error) {
        const kind = classify(error);
        if (kind === 'condition') {
          const rawItem = (error as { Item?: Record<string, AttributeValue> }).Item;
          const current = rawItem ? (unmarshall(rawItem) as Raw) : undefined;
          if (ambiguous && current && isMine(current)) return { won: true, item: current };
          return { won: false, current };
        }
        if (kind === 'ambiguous') ambiguous = true;
        if (kind === 'fatal' || attempt >= this.retry.attempts) {
          if (ambiguous && kind !== 'fatal') throw new AmbiguousWriteError(`${what}: outcome unknown after ${attempt} attempts (${describe(error)})`);
          throw this.unavailable(what, error);
        }
        await this.backoff(attempt);
      }
    }
  }

  // ---------------------------------------------------------------- nodes

  async getNode(id: string): Promise<NodeItem | undefined> {
    const out = await this.read('get node', () =>
      this.send<{ Item?: Raw }>(new GetCommand({ TableName: this.table, Key: keys.node(id), ConsistentRead: true })),
    );
    return out.Item ? parseNode(out.Item, this.warn) : undefined;
  }

  async joinNode(node: NodeItem, expected: { inc: number; state: NodeState; draining?: boolean } | undefined): Promise<boolean> {
    const item = { ...keys.node(node.id), member: keys.memberPartition, ring: ringKey(node.id), ...node };
    const condition: { ConditionExpression: string; ExpressionAttributeNames: Record<string, string>; ExpressionAttributeValues: Record<string, unknown> } =
      expected === undefined
        ? // No item, or one whose identity is unreadable (see MemoryStore's hasIdentity).
          {
            ConditionExpression: 'attribute_not_exists(pk) OR NOT attribute_type(#inc, :N) OR NOT (#state IN (:alive, :dead, :left))',
            ExpressionAttributeNames: { '#inc': 'inc', '#state': 'state' },
            ExpressionAttributeValues: { ':N': 'N', ':alive': 'alive', ':dead': 'dead', ':left': 'left' },
          }
        : {
            // The drain flag as it was read, too: an operator's drain or undrain since then wins.
            ConditionExpression: `#inc = :inc AND #state = :state AND ${expected.draining ? '#draining = :true' : '(attribute_not_exists(#draining) OR #draining = :false)'}`,
            ExpressionAttributeNames: { '#inc': 'inc', '#state': 'state', '#draining': 'draining' },
            ExpressionAttributeValues: { ':inc': expected.inc, ':state': expected.state, ...(expected.draining ? { ':true': true } : { ':false': false }) },
          };
    const out = await this.write(
      'join',
      () => this.send(new PutCommand({ TableName: this.table, Item: item, ...condition, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })),
      (current) => current['inc'] === node.inc && current['state'] === 'alive' && current['joinedAt'] === node.joinedAt,
    );
    return out.won;
  }

  async heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    const out = await this.write(
      'heartbeat',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(input.id),
            // SET, not ADD: a heartbeat retried after a lost reply must not count twice.
            // Also rewrites every other field this node owns, so that a corrupted item heals
            // on the next beat (the inbox belongs to others and is only created if missing).
            UpdateExpression:
              'SET #counter = :counter, #taskCount = :taskCount, #capacity = :capacity, #types = :types, #watch = :watch, ' +
              '#id = :id, #member = :member, #ring = :ring, #joinedAt = :joinedAt, ' +
              '#inbox = if_not_exists(#inbox, :zero), #neighbours = if_not_exists(#neighbours, :zero)' +
              // The load is stored only while it differs from the task count (NodeItem.load).
              (input.load === undefined ? ' REMOVE #load' : ', #load = :load'),
            // Never backwards: a heartbeat that lands after a later one (held up on the way)
            // is refused; an unreadable counter is overwritten, so that it heals.
            ConditionExpression: '#inc = :inc AND #state = :alive AND (NOT attribute_type(#counter, :N) OR #counter <= :counter)',
            ExpressionAttributeNames: {
              '#counter': 'counter',
              '#taskCount': 'taskCount',
              '#load': 'load',
              '#capacity': 'capacity',
              '#inc': 'inc',
              '#state': 'state',
              '#types': 'types',
              '#watch': 'watch',
              '#id': 'id',
              '#member': 'member',
              '#ring': 'ring',
              '#joinedAt': 'joinedAt',
              '#inbox': 'inbox',
              '#neighbours': 'neighbours',
            },
            ExpressionAttributeValues: {
              ':counter': input.counter,
              ':taskCount': input.taskCount,
              ...(input.load === undefined ? {} : { ':load': input.load }),
              ':capacity': input.capacity,
              ':types': input.types,
              ':watch': input.watch,
              ':id': input.id,
              ':member': keys.memberPartition,
              ':ring': ringKey(input.id),
              ':joinedAt': input.joinedAt,
              ':zero': 0,
              ':inc': input.inc,
              ':alive': 'alive',
              ':N': 'N',
            },
            // The returned item carries the inbox at no read cost.
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
          this.heartbeatClient,
          true,
        ),
      () => false, // idempotent: a retry after an ambiguous attempt simply succeeds again
    );
    if (out.won) return { ok: true, node: out.item ? parseNode(out.item, this.warn) : undefined };
    return { ok: false, current: out.current ? parseNode(out.current, this.warn) : undefined };
  }

  async readNodes(ids: string[], options: { cluster?: boolean } = {}): Promise<NodesRead> {
    const wanted: Record<string, unknown>[] = [...new Set(ids)].map((id) => keys.node(id));
    const withCluster = options.cluster !== false;
    if (withCluster) wanted.push(keys.cluster);
    const { found, unprocessed } = await this.batchGet('read nodes', wanted);
    const nodes = new Map<string, NodeItem>();
    const rounds = new Map<string, number>();
    let cluster: ClusterItem | undefined = withCluster ? { tasks: 0 } : undefined;
    for (const { raw, round } of found) {
      if (raw['pk'] === keys.cluster.pk) {
        cluster = parseCluster(raw);
        continue;
      }
      const node = parseNode(raw, this.warn);
      if (!node) continue;
      nodes.set(node.id, node);
      if (round > 1) rounds.set(node.id, round);
    }
    const unread = new Set<string>();
    for (const key of unprocessed) {
      const pk = String(key['pk']);
      if (pk === keys.cluster.pk) cluster = undefined;
      else unread.add(pk.slice('node#'.length));
    }
    if (unprocessed.length > 0) this.warn(`read nodes: ${unprocessed.length} keys unprocessed after ${this.retry.attempts} rounds`);
    return { nodes, cluster, unread, rounds };
  }

  /** One query of the members index; `range` narrows it to one side of a ring position. */
  private async queryMembers(what: string, range: { op: '>' | '<'; key: string } | undefined, forward: boolean, limit?: number): Promise<MemberEntry[]> {
    const members: MemberEntry[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.read(what, () =>
        this.send<{ Items?: Raw[]; LastEvaluatedKey?: Record<string, unknown> }>(
          new QueryCommand({
            TableName: this.table,
            IndexName: keys.membersIndex,
            KeyConditionExpression: range ? `#member = :member AND #ring ${range.op} :ring` : '#member = :member',
            ExpressionAttributeNames: range ? { '#member': 'member', '#ring': 'ring' } : { '#member': 'member' },
            ExpressionAttributeValues: range ? { ':member': keys.memberPartition, ':ring': range.key } : { ':member': keys.memberPartition },
            ScanIndexForward: forward,
            ExclusiveStartKey: start,
            ...(limit !== undefined ? { Limit: limit - members.length } : {}),
          }),
        ),
      );
      for (const raw of out.Items ?? []) {
        const pk = raw['pk'];
        const { state, ring } = raw;
        if (typeof pk === 'string' && typeof ring === 'string' && (state === 'alive' || state === 'dead' || state === 'left')) {
          members.push({ id: pk.slice('node#'.length), state, ring });
        } else this.warn(`skipping corrupt member entry ${String(pk)}`);
      }
      start = out.LastEvaluatedKey;
    } while (start && (limit === undefined || members.length < limit));
    return members;
  }

  listMembers(): Promise<MemberEntry[]> {
    return this.queryMembers('list members', undefined, true);
  }

  ringSuccessors(after: string, limit: number): Promise<MemberEntry[]> {
    // DynamoDB refuses an empty string in a key condition; '' means "from the start".
    return this.queryMembers('ring successors', after === '' ? undefined : { op: '>', key: after }, true, limit);
  }

  ringPredecessors(before: string, limit: number): Promise<MemberEntry[]> {
    return this.queryMembers('ring predecessors', { op: '<', key: before }, false, limit);
  }

  async declareDead(id: string, observed: { inc: number; counter: number }, by: string): Promise<boolean> {
    const out = await this.write(
      'declare dead',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            UpdateExpression: 'SET #state = :dead, deadBy = :by',
            ConditionExpression: '#inc = :inc AND #counter = :counter AND #state = :alive',
            ExpressionAttributeNames: { '#state': 'state', '#inc': 'inc', '#counter': 'counter' },
            ExpressionAttributeValues: { ':dead': 'dead', ':by': by, ':inc': observed.inc, ':counter': observed.counter, ':alive': 'alive' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (current) => current['state'] === 'dead' && current['deadBy'] === by && current['inc'] === observed.inc && current['counter'] === observed.counter,
    );
    return out.won;
  }

  async setDraining(id: string, draining: boolean): Promise<DrainResult> {
    const out = await this.write(
      draining ? 'drain' : 'undrain',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            // Only the flag: the heartbeat's SET names the node's own fields, so neither write
            // undoes the other, and the beat's condition (incarnation, state, counter) holds.
            // Stored only while true, so that an item nobody drained looks as it always did.
            UpdateExpression: draining ? 'SET #draining = :true' : 'REMOVE #draining',
            ConditionExpression: '#state = :alive',
            ExpressionAttributeNames: { '#draining': 'draining', '#state': 'state' },
            ExpressionAttributeValues: draining ? { ':true': true, ':alive': 'alive' } : { ':alive': 'alive' },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false, // idempotent: a retry after an ambiguous attempt lands again unless the node is gone
    );
    if (out.won) return { ok: true, node: out.item ? parseNode(out.item, this.warn) : undefined };
    return { ok: false, current: out.current ? parseNode(out.current, this.warn) : undefined };
  }

  async markLeaving(id: string, inc: number): Promise<boolean> {
    const out = await this.write(
      'leaving',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            // Only the flag, as with the drain flag: the heartbeat's SET never names it.
            UpdateExpression: 'SET #leaving = :true',
            ConditionExpression: '#inc = :inc AND #state = :alive',
            ExpressionAttributeNames: { '#leaving': 'leaving', '#state': 'state', '#inc': 'inc' },
            ExpressionAttributeValues: { ':true': true, ':inc': inc, ':alive': 'alive' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false, // idempotent: a retry after an ambiguous attempt lands again unless the incarnation is gone
    );
    return out.won;
  }

  async markLeft(id: string, inc: number): Promise<boolean> {
    const out = await this.write(
      'leave',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            UpdateExpression: 'SET #state = :left',
            ConditionExpression: '#inc = :inc AND #state = :alive',
            ExpressionAttributeNames: { '#state': 'state', '#inc': 'inc' },
            ExpressionAttributeValues: { ':left': 'left', ':inc': inc, ':alive': 'alive' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (current) => current['state'] === 'left' && current['inc'] === inc,
    );
    return out.won;
  }

  async removeNode(id: string, expected: { inc: number; state: NodeState }): Promise<boolean> {
    const out = await this.write(
      'remove node',
      () =>
        this.send(
          new DeleteCommand({
            TableName: this.table,
            Key: keys.node(id),
            ConditionExpression: '#inc = :inc AND #state = :state',
            ExpressionAttributeNames: { '#inc': 'inc', '#state': 'state' },
            ExpressionAttributeValues: { ':inc': expected.inc, ':state': expected.state },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false,
    );
    // After an ambiguous attempt a failed condition with no item means our delete landed.
    return out.won || out.current === undefined;
  }

  async peekInbox(id: string): Promise<number | undefined> {
    const out = await this.read('peek inbox', () =>
      this.send<{ Item?: Raw }>(
        new GetCommand({ TableName: this.table, Key: keys.node(id), ProjectionExpression: '#inbox', ExpressionAttributeNames: { '#inbox': 'inbox' } }),
      ),
    );
    const inbox = out.Item?.['inbox'];
    return typeof inbox === 'number' ? inbox : undefined;
  }

  async notify(id: string): Promise<Notified | undefined> {
    const out = await this.write(
      'notify',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            UpdateExpression: 'ADD inbox :one',
            ConditionExpression: 'attribute_exists(pk)',
            ExpressionAttributeValues: { ':one': 1 },
            // The doorbell's address and the new inbox value come back at no read cost.
            ReturnValues: 'ALL_NEW',
          }),
        ),
      () => true,
    );
    return out.won ? notified(out.item) : undefined;
  }

  async notifyNeighbours(id: string): Promise<void> {
    await this.write(
      'notify neighbours',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.node(id),
            UpdateExpression: 'ADD neighbours :one',
            ConditionExpression: 'attribute_exists(pk)',
            ExpressionAttributeValues: { ':one': 1 },
          }),
        ),
      () => true,
    );
  }

  async bumpCluster(field: keyof ClusterItem): Promise<void> {
    await this.write(
      'bump cluster',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.cluster,
            UpdateExpression: 'ADD #field :one',
            ExpressionAttributeNames: { '#field': field },
            ExpressionAttributeValues: { ':one': 1 },
          }),
        ),
      () => true,
    );
  }

  // ---------------------------------------------------------------- tasks

  async createTask(task: NewTaskRecord, createdAt: string): Promise<'created' | 'exists'> {
    const item = { ...keys.task(task.id), ...newTaskRecord(task, createdAt) };
    const out = await this.write(
      'create task',
      () =>
        this.send(
          new PutCommand({
            TableName: this.table,
            Item: item,
            ConditionExpression: 'attribute_not_exists(pk)',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (current) => current['createdAt'] === createdAt && current['type'] === task.type,
    );
    return out.won ? 'created' : 'exists';
  }

  async getTasks(ids: readonly string[]): Promise<Map<string, TaskItem>> {
    const { found, unprocessed } = await this.batchGet('get tasks', [...new Set(ids)].map((id) => keys.task(id)));
    if (unprocessed.length > 0) throw new StoreUnavailableError(`get tasks: ${unprocessed.length} keys unprocessed after ${this.retry.attempts} rounds`);
    const tasks = new Map<string, TaskItem>();
    for (const { raw } of found) {
      const task = parseTask(raw, this.warn);
      if (task) tasks.set(task.id, task);
    }
    return tasks;
  }

  /**
   * Consistent reads of items by key, 100 keys per request. Keys the store left unprocessed
   * (a throttled partition, the 16 MB reply limit) are asked again after a backoff, up to the
   * retry policy's attempts; those still unprocessed are returned as such. Each item comes
   * with the number of the request that read it, in the order they were sent: items of
   * different requests were read at different moments.
   */
  private async batchGet(what: string, wanted: Record<string, unknown>[]): Promise<{ found: Array<{ raw: Raw; round: number }>; unprocessed: Record<string, unknown>[] }> {
    const found: Array<{ raw: Raw; round: number }> = [];
    const unprocessed: Record<string, unknown>[] = [];
    let request = 0;
    for (let i = 0; i < wanted.length; i += 100) {
      let pending: Record<string, unknown>[] = wanted.slice(i, i + 100);
      for (let attempt = 1; pending.length > 0; attempt++) {
        const keysNow = pending;
        const out = await this.read(what, () =>
          this.send<{ Responses?: Record<string, Raw[]>; UnprocessedKeys?: Record<string, { Keys?: Record<string, unknown>[] }> }>(
            new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keysNow, ConsistentRead: true } } }),
          ),
        );
        request += 1;
        for (const raw of out.Responses?.[this.table] ?? []) found.push({ raw, round: request });
        pending = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
        if (pending.length === 0) break;
        if (attempt >= this.retry.attempts) {
          unprocessed.push(...pending);
          break;
        }
        await this.backoff(attempt);
      }
    }
    return { found, unprocessed };
  }

  async getTask(id: string): Promise<TaskItem | undefined> {
    const out = await this.read('get task', () =>
      this.send<{ Item?: Raw }>(new GetCommand({ TableName: this.table, Key: keys.task(id), ConsistentRead: true })),
    );
    return out.Item ? parseTask(out.Item, this.warn) : undefined;
  }

  private ownershipCondition(expected: TaskOwnership) {
    return {
      ConditionExpression: '#owner = :fromOwner AND ownerInc = :fromInc AND #token = :fromToken AND #state = :ready',
      names: { '#owner': 'owner', '#token': 'token', '#state': 'state' },
      values: { ':fromOwner': expected.owner ?? keys.freeOwner, ':fromInc': expected.ownerInc, ':fromToken': expected.token, ':ready': 'ready' },
    };
  }

  async deleteTask(id: string, expected?: TaskOwnership): Promise<TaskItem | undefined> {
    const condition = expected ? this.ownershipCondition(expected) : undefined;
    const out = await this.write(
      'delete task',
      () =>
        this.send(
          new DeleteCommand({
            TableName: this.table,
            Key: keys.task(id),
            ConditionExpression: condition ? `attribute_exists(pk) AND ${condition.ConditionExpression}` : 'attribute_exists(pk)',
            ExpressionAttributeNames: condition?.names,
            ExpressionAttributeValues: condition?.values,
            ReturnValues: 'ALL_OLD',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false,
    );
    if (!out.won || !out.item) return undefined;
    return parseTask(out.item, this.warn) ?? (out.item as unknown as TaskItem);
  }

  async listTasks(limit: number, cursor?: string): Promise<Page<TaskItem>> {
    let start: Record<string, unknown> | undefined;
    if (cursor !== undefined) {
      try {
        start = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
        // Exactly a table key (the scan's last evaluated item may be any kind of item);
        // anything else would reach DynamoDB and come back as a validation error.
        const fields = typeof start === 'object' && start !== null ? Object.keys(start).sort().join(',') : '';
        if (fields !== 'pk,sk' || typeof start['pk'] !== 'string' || typeof start['sk'] !== 'string' || !start['pk'] || !start['sk']) throw new Error('shape');
      } catch {
        throw new InvalidCursorError('cursor is not one this API returned');
      }
    }
    const items: TaskItem[] = [];
    do {
      // Limit counts items evaluated before the filter, so a page never overshoots.
      const out = await this.read('list tasks', () =>
        this.send<{ Items?: Raw[]; LastEvaluatedKey?: Record<string, unknown> }>(
          new ScanCommand({
            TableName: this.table,
            FilterExpression: 'begins_with(pk, :prefix)',
            ExpressionAttributeValues: { ':prefix': 'task#' },
            ExclusiveStartKey: start,
            Limit: limit - items.length,
            ConsistentRead: true,
          }),
        ),
      );
      for (const raw of out.Items ?? []) {
        const task = parseTask(raw, this.warn);
        if (task) items.push(task);
      }
      start = out.LastEvaluatedKey;
    } while (start && items.length < limit);
    return start ? { items, cursor: Buffer.from(JSON.stringify(start)).toString('base64url') } : { items };
  }

  /** One owner's tasks in slot order; `slots` narrows the query to a stretch of the sort key. */
  private async byOwner(owner: string, limit?: number, slots?: SlotSegment): Promise<TaskHead[]> {
    const tasks: TaskHead[] = [];
    const condition = slots === undefined ? '' : slots.op === 'between' ? ' AND #slot BETWEEN :from AND :to' : ` AND #slot ${slots.op} :at`;
    const values = slots === undefined ? {} : slots.op === 'between' ? { ':from': slots.from, ':to': slots.to } : { ':at': slots.at };
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.read('query tasks by owner', () =>
        this.send<{ Items?: Raw[]; LastEvaluatedKey?: Record<string, unknown> }>(
          new QueryCommand({
            TableName: this.table,
            IndexName: keys.ownerIndex,
            KeyConditionExpression: `#owner = :owner${condition}`,
            ExpressionAttributeNames: slots === undefined ? { '#owner': 'owner' } : { '#owner': 'owner', '#slot': 'slot' },
            ExpressionAttributeValues: { ':owner': owner, ...values },
            ExclusiveStartKey: start,
            // Pages small enough to come back well within the request timeout (a period's
            // fraction), however many tasks the owner has.
            Limit: Math.min(queryPage, limit === undefined ? queryPage : limit - tasks.length),
          }),
        ),
      );
      for (const raw of out.Items ?? []) {
        // BETWEEN includes its upper bound; ranges exclude it.
        if (slots?.op === 'between' && raw['slot'] === slots.to) continue;
        const task = parseTaskHead(raw, this.warn);
        if (task) tasks.push(task);
      }
      start = out.LastEvaluatedKey;
    } while (start && (limit === undefined || tasks.length < limit));
    return tasks;
  }

  tasksOwnedBy(nodeId: string): Promise<TaskHead[]> {
    return this.byOwner(nodeId);
  }

  async unownedTasks(limit: number, range?: SlotRange): Promise<TaskHead[]> {
    const tasks: TaskHead[] = [];
    for (const segment of slotSegments(range)) {
      if (tasks.length >= limit) break;
      tasks.push(...(await this.byOwner(keys.freeOwner, limit - tasks.length, segment)));
    }
    return tasks;
  }

  /** The conditional update that moves one task (alone, or as part of a transaction). */
  private moveUpdate(id: string, from: TaskOwnership, to: { owner: string | null; ownerInc: number }) {
    const condition = this.ownershipCondition(from);
    return {
      TableName: this.table,
      Key: keys.task(id),
      UpdateExpression: 'SET #owner = :toOwner, ownerInc = :toInc, #token = :nextToken, previousOwner = :fromOwner REMOVE releaseRequested',
      ConditionExpression: condition.ConditionExpression,
      ExpressionAttributeNames: condition.names,
      ExpressionAttributeValues: { ...condition.values, ':toOwner': to.owner ?? keys.freeOwner, ':toInc': to.ownerInc, ':nextToken': from.token + 1, ':fromOwner': from.owner ?? keys.freeOwner },
    };
  }

  async moveTask(id: string, from: TaskOwnership, to: { owner: string | null; ownerInc: number }): Promise<TaskItem | undefined> {
    const toOwner = to.owner ?? keys.freeOwner;
    const out = await this.write(
      'move task',
      () => this.send(new UpdateCommand({ ...this.moveUpdate(id, from, to), ReturnValues: 'ALL_NEW', ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })),
      (current) => current['owner'] === toOwner && current['ownerInc'] === to.ownerInc && current['token'] === from.token + 1,
    );
    return out.won && out.item ? parseTask(out.item, this.warn) : undefined;
  }

  /**
   * Unlike the single writes, an ambiguous transaction is not retried: a retry that found the
   * first attempt's effect could not tell it from a refusal (a transaction returns no items
   * with a cancellation), so the caller gets AmbiguousWriteError and settles task by task.
   * A cancellation (a condition failed, a conflict, throttling of one item) applied nothing
   * and is the final answer; a throttled or undelivered request is retried like any write.
   */
  async moveTasks(moves: ReadonlyArray<{ id: string; from: TaskOwnership }>, to: { owner: string; ownerInc: number }): Promise<boolean> {
    if (moves.length === 0) return true;
    if (moves.length > maxBatchMove) throw new Error(`moveTasks takes at most ${maxBatchMove} tasks, got ${moves.length}`);
    const transaction = () => new TransactWriteCommand({ ClientRequestToken: randomUUID(), TransactItems: moves.map(({ id, from }) => ({ Update: this.moveUpdate(id, from, to) })) });
    let command = transaction();
    let ambiguous: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(command);
        return true;
      } catch (error) {
        const reasons = (error as { CancellationReasons?: Array<{ Code?: string }> }).CancellationReasons;
        if ((error as { name?: string }).name === 'TransactionCanceledException') {
          const refused = (reasons ?? []).some((r) => r.Code === 'ConditionalCheckFailed');
          // Refused after an attempt that may have landed: perhaps by our own effect.
          if (refused && ambiguous) throw new AmbiguousWriteError(`move tasks: a ${moves.length}-task transaction was refused after an attempt whose outcome is unknown (${describe(ambiguous)})`);
          // A task not as expected: nothing changed, and the caller decides task by task.
          if (refused || reasons === undefined || attempt >= this.retry.attempts) return false;
          // Throttled or in conflict with another transaction: nothing changed, and the whole
          // transaction may go again, as a new one (this one is over).
          await this.backoff(attempt);
          if (!ambiguous) command = transaction();
          continue;
        }
        const kind = classify(error);
        if (kind === 'ambiguous') ambiguous = error;
        if (kind === 'fatal' || attempt >= this.retry.attempts) {
          if (ambiguous) throw new AmbiguousWriteError(`move tasks: outcome of a ${moves.length}-task transaction unknown (${describe(error)})`);
          throw this.unavailable('move tasks', error);
        }
        // The same command again, with the same client token: DynamoDB applies a transaction
        // once per token (for ten minutes), answers an attempt that landed with success and
        // one still being applied with TransactionInProgressException. A fresh transaction
        // instead could race the lost one for the same items.
        await this.backoff(attempt);
      }
    }
  }

  async updateTask(id: string, expected: TaskOwnership, patch: TaskPatch): Promise<boolean> {
    const condition = this.ownershipCondition(expected);
    const sets: string[] = [];
    const names: Record<string, string> = { ...condition.names };
    const values: Record<string, unknown> = { ...condition.values };
    for (const [field, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      names[`#f_${field}`] = field;
      values[`:f_${field}`] = value;
      sets.push(`#f_${field} = :f_${field}`);
    }
    const leavesIndex = ownerAttribute(expected.owner, patch.state ?? 'ready') === undefined;
    if (sets.length === 0) throw new Error('updateTask needs at least one field to set');
    const expression = `SET ${sets.join(', ')}${leavesIndex ? ' REMOVE #owner' : ''}`;
    const out = await this.write(
      'update task',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.task(id),
            UpdateExpression: expression,
            ConditionExpression: condition.ConditionExpression,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (current) => current['token'] === expected.token && Object.entries(patch).every(([f, v]) => v === undefined || canonicalJson(current[f]) === canonicalJson(v)),
    );
    return out.won;
  }

  /**
   * The token is set, not added to: a retry after an attempt whose reply was lost is then
   * refused by its own effect (the token moved past the one expected), which the predicate
   * recognises as ours (that token, this payload), instead of raising the token twice.
   */
  async updatePayload(id: string, expectedToken: number, update: { payload: unknown; itemBytes: number }): Promise<PayloadUpdateResult> {
    const next = expectedToken + 1;
    const out = await this.write(
      'update payload',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.task(id),
            UpdateExpression: 'SET #payload = :payload, itemBytes = :itemBytes, #token = :next, attempts = :zero REMOVE #error',
            ConditionExpression: 'attribute_exists(pk) AND #token = :expected AND #state = :ready',
            ExpressionAttributeNames: { '#payload': 'payload', '#token': 'token', '#state': 'state', '#error': 'error' },
            ExpressionAttributeValues: { ':payload': update.payload, ':itemBytes': update.itemBytes, ':next': next, ':zero': 0, ':expected': expectedToken, ':ready': 'ready' },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (current) => current['token'] === next && canonicalJson(current['payload']) === canonicalJson(update.payload),
    );
    if (out.won) return { ok: true, task: out.item ? parseTask(out.item, this.warn) : undefined };
    return { ok: false, current: out.current ? parseTask(out.current, this.warn) : undefined };
  }

  async requestRelease(id: string): Promise<TaskItem | undefined> {
    const out = await this.write(
      'request release',
      () =>
        this.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keys.task(id),
            UpdateExpression: 'SET releaseRequested = :yes',
            ConditionExpression: 'attribute_exists(pk) AND #state = :ready',
            ExpressionAttributeNames: { '#state': 'state' },
            ExpressionAttributeValues: { ':yes': true, ':ready': 'ready' },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false,
    );
    return out.won && out.item ? parseTask(out.item, this.warn) : undefined;
  }
}

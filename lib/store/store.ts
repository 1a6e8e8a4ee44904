/**
 * The narrow interface between the coordination logic and the shared table. Every state
 * change is a compare-and-set: it names the state it expects and reports whether it won.
 * Two implementations: DynamoStore (the product) and MemoryStore (the deterministic
 * simulator); `test/store.test.ts` runs one conformance suite against both, on DynamoDB Local
 * and in memory.
 */

export type NodeState = 'alive' | 'dead' | 'left';
/** `ready` (runs, or waits for a node), `done` (a finite task completed), `failed` (out of attempts). */
export type TaskState = 'ready' | 'done' | 'failed';

/**
 * What a watcher publishes about a peer with every heartbeat: "I first saw your counter at
 * `counter` (incarnation `inc`) when my own counter was `since`". A freshly started observer
 * reads these to judge a peer's staleness without watching it for a full window itself.
 */
export interface WatchRecord {
  inc: number;
  counter: number;
  since: number;
}

/** A node's item: its incarnation, counter, state and what it watched. */
export interface NodeItem {
  id: string;
  /** Bumped on every (re)join; a node's heartbeat is refused once its incarnation is gone. */
  inc: number;
  /** The operability metric of the patent: advanced by one per period by the node itself. */
  counter: number;
  state: NodeState;
  /** Bumped by anyone who changed this node's tasks behind its back (handover, delete, release request). */
  inbox: number;
  /** Bumped when a node joins or leaves next to this one on the ring: time to re-read the neighbourhood. */
  neighbours: number;
  taskCount: number;
  /**
   * The weight of the tasks it holds (see taskWeight), stored only when it differs from
   * taskCount (some task weighs more than 1), so that nodes whose tasks all weigh 1 write
   * what they wrote before weights existed. Read it through nodeLoad.
   */
  load?: number;
  /** Most weight this node runs at once (every task weighs 1 unless given a weight). */
  capacity: number;
  /** Task types this node has handlers for; takeover only hands a node tasks it can run. */
  types: string[];
  watch: Record<string, WatchRecord>;
  /** The protocol settings this incarnation runs with; every live node must share them. */
  settings?: ProtocolSettings;
  /** Who declared this node dead (set with state 'dead'). */
  deadBy?: string;
  /** Wall-clock time of the join, for people reading `status`; the protocol never reads it. */
  joinedAt: string;
  /** Where this incarnation's doorbell listens ("host:port"), if it has one. */
  bell?: string;
  /**
   * An operator's drain (`keeper drain`): the node takes no new tasks and hands its own to
   * others. Written by operators only (setDraining), never by the heartbeat, and stored only
   * while true.
   */
  draining?: boolean;
  /**
   * The application version this node runs (`appVersion`, KEEPER_APP_VERSION): placement
   * prefers the newest version present (protocol/placement.ts, newestVersion). Written by the
   * join only, and stored only when set.
   */
  version?: string;
  /**
   * The node got SIGTERM and is handing its tasks out (`Worker.stop`): nobody places a task
   * on it or pushes one to it. Written by the node itself (markLeaving), never by the
   * heartbeat, and stored only while true; a new incarnation starts without it.
   */
  leaving?: boolean;
  /**
   * The labels this incarnation publishes (KeeperConfig.labels), matched against tasks'
   * `require` and `prefer`. Written by the join only, and stored only when there are some.
   */
  labels?: Record<string, string>;
}

/** A node's inbox after a notification, and where to ring it. */
export interface Notified {
  inbox: number;
  bell?: string;
}

/** The settings the safety bound depends on, which peers judge a node by (config.ts, PeerSettings). */
export interface ProtocolSettings {
  periodMs: number;
  staleTicks: number;
  driftBound: number;
  fenceMs: number;
  handlerStopMs: number;
  /**
   * Published since nodes judge each peer by its own settings. A node whose item lacks it
   * judges every peer by its own settings instead, so nobody joins next to it with different
   * ones (join.ts).
   */
  requestTimeoutMs?: number;
}

/** A task's item: type, payload, owner, fencing token, state, attempts, result or error. */
export interface TaskItem {
  id: string;
  type: string;
  payload: unknown;
  /** Owning node id, or null when the task waits to be claimed (or is done or failed). */
  owner: string | null;
  /** Incarnation of the owner that holds the task; an older incarnation's tasks are orphans. */
  ownerInc: number;
  /** Fencing token: incremented on every change of owner and every payload update, never decreases. */
  token: number;
  state: TaskState;
  attempts: number;
  result?: unknown;
  error?: string;
  /** Set by an operator's force-release: the owner stops the task and puts it back. */
  releaseRequested?: boolean;
  /** The owner before the last move (absent if the task was free then): rebalancing never sends it straight back. */
  previousOwner?: string;
  /** About how large the item is, in bytes (set at creation), to size transactions. */
  itemBytes?: number;
  /**
   * Placed before lower priorities when capacity is short (absent: 0); set at creation. See
   * taskPriority.
   */
  priority?: number;
  /** How much of a node's capacity the task takes (absent: 1); set at creation. See taskWeight. */
  weight?: number;
  /** Labels a node must have, every one, to run the task (absent: any node); set at creation. */
  require?: Record<string, string>;
  /** Labels the task would rather run where they are (absent: none); never leaves it unowned. Set at creation. */
  prefer?: Record<string, string>;
  createdAt: string;
  /**
   * The state the task's runs last stored with `ctx.checkpoint` (absent if none): written
   * only by the current owner under the current token, kept through every move, and read by
   * the next owner and the next attempt.
   */
  checkpoint?: unknown;
}

/**
 * A task as the owner index holds it: enough to find, place and move it (a compare-and-set
 * needs only the ownership), without its payload or history. Index entries hold only ready
 * tasks, as of the index, which may lag behind the table. The full item comes from getTask(s)
 * or from the move that lands.
 */
export interface TaskHead {
  id: string;
  type: string;
  owner: string | null;
  ownerInc: number;
  token: number;
  releaseRequested?: boolean;
  /** About how large the whole item is, in bytes (its payload included), to size transactions. */
  itemBytes?: number;
  /** The task's priority (absent: 0); the owner index carries it, so placement needs no read. */
  priority?: number;
  /** The task's weight (absent: 1); the owner index carries it, so placement needs no read. */
  weight?: number;
  /** Labels a node must have to run it, and labels it prefers (absent: none); the owner index carries both. */
  require?: Record<string, string>;
  prefer?: Record<string, string>;
}

/** What a new task is stored from (TaskAdmin validates it first). */
export interface NewTaskRecord {
  id: string;
  type: string;
  payload: unknown;
  /** Absent or 0: the default priority, which is not stored. */
  priority?: number;
  /** Absent or 1: the default weight, which is not stored. */
  weight?: number;
  /** Absent or empty: none, which is not stored. */
  require?: Record<string, string>;
  prefer?: Record<string, string>;
}

/** A task's priority: higher is placed first when capacity is short; 0 unless set. */
export function taskPriority(task: { priority?: number }): number {
  return task.priority ?? 0;
}

/**
 * How much of a node's capacity a task takes: a positive whole number, 1 unless set. Nodes
 * balance the sum of their tasks' weights, and never hold more than their capacity of it.
 */
export function taskWeight(task: { weight?: number }): number {
  return task.weight ?? 1;
}

/** The weight of the tasks a node holds, as it last published it (its task count when it stores no load). */
export function nodeLoad(node: Pick<NodeItem, 'taskCount' | 'load'>): number {
  return node.load ?? node.taskCount;
}

/** The cluster item: a counter bumped whenever tasks become claimable. */
export interface ClusterItem {
  /** Bumped when tasks become claimable: nodes look for unowned tasks when it changes. */
  tasks: number;
}

/** One read of node items (Store.readNodes). */
export interface NodesRead {
  nodes: Map<string, NodeItem>;
  /** The cluster item, if asked for and read. */
  cluster: ClusterItem | undefined;
  /**
   * Ids the store still left unread after its last round (BatchGetItem's UnprocessedKeys, on
   * a throttled partition say): not observed this time, which is not the same as absent.
   */
  unread: ReadonlySet<string>;
  /**
   * Which request each node was read by (1 = the first), when keys left unprocessed took more
   * than one: an item read by a later request was read later. Ids not in the map: 1.
   */
  rounds: ReadonlyMap<string, number>;
}

export interface MemberEntry {
  id: string;
  state: NodeState;
  /** Ring position (placement.ts ringKey). */
  ring: string;
}

/** Ownership a task is expected to have before a compare-and-set on it. */
export interface TaskOwnership {
  owner: string | null;
  ownerInc: number;
  token: number;
}

export interface HeartbeatInput {
  id: string;
  inc: number;
  joinedAt: string;
  counter: number;
  taskCount: number;
  /** The weight of the tasks held; absent when it equals taskCount (NodeItem.load). */
  load?: number;
  capacity: number;
  types: string[];
  watch: Record<string, WatchRecord>;
}

/**
 * What updatePayload found: the task item after the update, or the item that refused it
 * (absent, not ready, or its token no longer the one expected).
 */
export type PayloadUpdateResult = { ok: true; task: TaskItem | undefined } | { ok: false; current: TaskItem | undefined };

/** What setDraining found: the node item after the change, or the item that refused it (absent, dead or left). */
export type DrainResult = { ok: true; node: NodeItem | undefined } | { ok: false; current: NodeItem | undefined };

export type HeartbeatResult =
  /** `node` is undefined if the rest of the item is corrupt; the node still holds its incarnation. */
  | { ok: true; node: NodeItem | undefined }
  /** The item no longer belongs to this incarnation, or was declared dead: it must stop and rejoin. */
  | { ok: false; current: NodeItem | undefined };

export interface TaskPatch {
  state?: TaskState;
  attempts?: number;
  result?: unknown;
  error?: string;
  /** A run's checkpoint as stored: JSON text (TaskItem.checkpoint is its parsed value). */
  checkpoint?: string;
}

export interface Page<T> {
  items: T[];
  cursor?: string;
}

/** The narrow store interface a node uses: every write is a compare-and-set naming the state it expects. DynamoStore and MemoryStore implement it. */
export interface Store {
  /**
   * The longest one request may last, if the store bounds it (DynamoStore does): the safety
   * bound counts on no request lasting longer than the worker's requestTimeoutMs.
   */
  readonly requestTimeoutMs?: number;
  // --- nodes ---
  getNode(id: string): Promise<NodeItem | undefined>;
  /**
   * Writes a new incarnation of a node. `expected` is the item the caller read (undefined if
   * there was none, or if its incarnation or state were unreadable); the write fails if the
   * item changed since, so two processes starting with one id cannot both join. Its drain
   * flag counts too (absent in `expected`: not draining), so that a rejoin that carries the
   * flag over cannot undo an operator's drain or undrain made after the read.
   */
  joinNode(node: NodeItem, expected: { inc: number; state: NodeState; draining?: boolean } | undefined): Promise<boolean>;
  /** The token operation: sets the counter, refused unless the item is this live incarnation. Idempotent. */
  heartbeat(input: HeartbeatInput): Promise<HeartbeatResult>;
  /**
   * Strongly consistent read of some nodes, plus the cluster item unless `cluster: false`.
   * Corrupt items are left out. Never eventually consistent: a stale witness counter would
   * inflate the detector's evidence (docs/protocol.md, "Watching"). Keys left unprocessed are
   * asked again; those still unread after the last round are reported, not treated as absent,
   * and each item says which round read it, because items of different rounds were read at
   * different moments (the detector must not mix them into one sighting).
   */
  readNodes(ids: string[], options?: { cluster?: boolean }): Promise<NodesRead>;
  /** Every node item's id and state, in ring order (eventually consistent; from the members index). */
  listMembers(): Promise<MemberEntry[]>;
  /** Up to `limit` members after ring position `after` ('' for the start), in ring order. */
  ringSuccessors(after: string, limit: number): Promise<MemberEntry[]>;
  /** Up to `limit` members before ring position `before` ('\uffff' for the end), nearest first. */
  ringPredecessors(before: string, limit: number): Promise<MemberEntry[]>;
  /** Compare-and-set on the counter that was observed: only one observer can win. */
  declareDead(id: string, observed: { inc: number; counter: number }, by: string): Promise<boolean>;
  /**
   * An operator drains a live node (`draining` true) or lifts the drain: sets or removes the
   * flag, refused unless the item is alive. The heartbeat never writes the flag, so it stays
   * through every beat; the node sees it in its heartbeat's reply.
   */
  setDraining(id: string, draining: boolean): Promise<DrainResult>;
  /**
   * A live incarnation announces that it is leaving (before it hands its tasks out): sets
   * `leaving`, refused unless the item is that incarnation, alive. The heartbeat never names
   * the flag, so it stays through every beat until the node is marked left.
   */
  markLeaving(id: string, inc: number): Promise<boolean>;
  /** Marks this incarnation as gone after a graceful leave. */
  markLeft(id: string, inc: number): Promise<boolean>;
  /** Removes the item of a dead or departed incarnation once it owns nothing. */
  removeNode(id: string, expected: { inc: number; state: NodeState }): Promise<boolean>;
  /** A node's inbox counter, from a cheap eventually consistent read (undefined if unreadable). */
  peekInbox(id: string): Promise<number | undefined>;
  /**
   * Tells a node that its tasks changed behind its back: bumps its inbox and returns the new
   * value with the node's doorbell (undefined if the node item is gone).
   */
  notify(id: string): Promise<Notified | undefined>;
  /** Tells a node that its ring neighbourhood changed (no-op if the node item is gone). */
  notifyNeighbours(id: string): Promise<void>;
  bumpCluster(field: keyof ClusterItem): Promise<void>;

  // --- tasks ---
  /** Creates a task unless one with that id exists. */
  createTask(task: NewTaskRecord, createdAt: string): Promise<'created' | 'exists'>;
  getTask(id: string): Promise<TaskItem | undefined>;
  /** Consistent reads of several tasks, by id; tasks that do not exist are absent. */
  getTasks(ids: readonly string[]): Promise<Map<string, TaskItem>>;
  /** Deletes a task; with `expected`, only if its ownership is still the same. */
  deleteTask(id: string, expected?: TaskOwnership): Promise<TaskItem | undefined>;
  listTasks(limit: number, cursor?: string): Promise<Page<TaskItem>>;
  /** Tasks whose owner is `nodeId` (any incarnation), from the owner index. */
  tasksOwnedBy(nodeId: string): Promise<TaskHead[]>;
  /**
   * Tasks waiting for an owner, from the owner index, in ring order of their slot (taskSlot).
   * With a range, only slots from `range.from` (inclusive) to `range.to` (exclusive), going
   * round the ring past its end when `to` <= `from` (the whole ring, starting at `from`, when
   * they are equal).
   */
  unownedTasks(limit: number, range?: SlotRange): Promise<TaskHead[]>;
  /** Compare-and-set of a task's owner; the fencing token goes up by one. */
  moveTask(id: string, from: TaskOwnership, to: { owner: string | null; ownerInc: number }): Promise<TaskItem | undefined>;
  /**
   * Moves several tasks to one owner in one transaction (at most `maxBatchMove` of them): all
   * or none, each compare-and-set on its own expected ownership, each token up by one.
   * Resolves false if the transaction was refused (a task not as expected, a conflicting
   * write): then nothing changed. Throws AmbiguousWriteError when the outcome is unknown: the
   * transaction may still land, and if it does, it lands whole.
   */
  moveTasks(moves: ReadonlyArray<{ id: string; from: TaskOwnership }>, to: { owner: string; ownerInc: number }): Promise<boolean>;
  /**
   * Records a run's outcome, or its checkpoint, while the caller still owns the task (owner,
   * incarnation, token, state ready). Fields the patch does not name stay as they are.
   */
  updateTask(id: string, expected: TaskOwnership, patch: TaskPatch): Promise<boolean>;
  /** Asks the owner to let go of a task (operator's force-release). */
  requestRelease(id: string): Promise<TaskItem | undefined>;
  /**
   * An operator's new payload for a ready task, compare-and-set on the token the caller read:
   * sets the payload and the item's size, raises the token by one, starts the attempts afresh
   * and clears the last error. Owner, incarnation, checkpoint and a pending release request
   * stay. The raised token is what makes the owner restart the task with the new payload
   * (Holdings.adopt) and what refuses every write of the run under the old one.
   */
  updatePayload(id: string, expectedToken: number, update: { payload: unknown; itemBytes: number }): Promise<PayloadUpdateResult>;
}

/** A stretch of the ring, as slot strings (see Store.unownedTasks). */
export interface SlotRange {
  from: string;
  to: string;
}

/** Most tasks one moveTasks call takes: DynamoDB's limit on the items of one transaction. */
export const maxBatchMove = 100;

/** The state of the world after a write whose outcome is unknown (timeout, 5xx, lost reply). */
export class AmbiguousWriteError extends Error {
  override name = 'AmbiguousWriteError';
}

/** The store could not be reached or answered with an error after retries. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}

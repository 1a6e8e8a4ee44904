import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { systemClock, sleep, type Clock, type Timer } from './clock.js';
import { batchMoveLanes, batchMoveSize, ConfigError, moveConcurrency, resolveConfig, type KeeperConfig, type KeeperOptions } from './config.js';
import { UdpDoorbell, type Doorbell, type Ring } from './doorbell.js';
import { errorText, silentLogger, type Logger } from './log.js';
import { Detector } from './protocol/detector.js';
import { Lease } from './protocol/lease.js';
import { livePredecessors, readNeighbourhood } from './membership.js';
import { claimArcs, inArc, placeTasks, rebalanceCount, rendezvous, type Candidate } from './protocol/placement.js';
import {
  AmbiguousWriteError,
  StoreUnavailableError,
  type MemberEntry,
  type NodeItem,
  type ProtocolSettings,
  type Store,
  type TaskHead,
  type TaskItem,
  type TaskOwnership,
} from './store/store.js';
import { taskSlot } from './store/items.js';
import { TaskRun, type HandlerOptions, type Registration, type RunHost, type RunOutcome, type TaskHandler } from './tasks.js';

export interface WorkerOptions extends Omit<KeeperOptions, 'doorbell'> {
  store: Store;
  /** false: no doorbell (handovers noticed at the next heartbeat); a Doorbell: use that one (the simulator's). Default: UDP. */
  doorbell?: boolean | Doorbell;
  clock?: Clock;
  logger?: Logger;
  /** Source of randomness for jitter and fresh incarnation numbers (seeded in the simulator). */
  random?: () => number;
}

export interface WorkerEvents {
  joined: [{ inc: number }];
  'heartbeat-failed': [{ error: string }];
  fenced: [{ sinceRenewalMs: number; tasks: number }];
  unfenced: [{ tasks: number }];
  zombie: [{ declaredBy?: string }];
  'declared-dead': [{ node: string; staleness: number }];
  takeover: [{ node: string; tasks: number; moved: number; ms: number }];
  'task-started': [{ task: string; token: number }];
  'task-ended': [{ task: string; outcome: RunOutcome }];
  rebalanced: [{ to: string; tasks: number }];
  left: [{ handedOver: number; ms: number }];
}

type Phase = 'new' | 'joining' | 'running' | 'leaving' | 'stopped';

/** Another live process holds this node id. */
export class NodeIdInUseError extends Error {
  override name = 'NodeIdInUseError';
}

interface Owned {
  task: TaskItem;
  run?: TaskRun;
  /** The tick at which this node took the task on. */
  since: number;
}

/** Rings kept waiting for the next maintenance pass; more are dropped (the inbox still tells). */
const maxWaitingRings = 64;
/** Task ids read for rings in one maintenance pass. */
const maxRungTasks = 1000;
/** Inbox values checked one by one against the rings; a larger jump means a resync anyway. */
const maxToldSpan = 1024;

/**
 * Periods a task stays on a node before rebalancing may move it on: two nodes acting on each
 * other's task counts of a period ago would otherwise hand the same task back and forth.
 */
export const rebalanceHoldTicks = 10;

/** Live successors a node knows (and hands tasks to): its watched peers and a few more. */
const spreadPeers = 8;
/**
 * Up to this many nodes, a node reads the whole ring when its neighbourhood changes (one
 * small index query), so that the cluster can split free tasks into equal arcs (claimArcs).
 */
const wholeRingMax = 32;
/** Free tasks a node reads per period beyond its own arc, looking for tasks left unclaimed. */
const strayPage = 16;
/** A node busy placing tasks of its own arc looks for strays every this many claim rounds. */
const strayEvery = 4;

/** Runs `fn` over items with at most `limit` in flight: a bounded number of round trips, never one after another. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

/** Bytes of task items one batch move may carry: DynamoDB allows 4 MB per transaction, this leaves room for the encoding. */
const batchMoveBytes = 2 * 2 ** 20;

/** What a task item of unknown size is assumed to weigh (one created before items recorded it). */
const unknownItemBytes = 4096;

/** Splits one peer's tasks into transactions: at most batchMoveSize tasks and 2 MB of items each. */
function transactionChunks<T extends TaskHead>(tasks: readonly T[]): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const task of tasks) {
    const size = task.itemBytes ?? unknownItemBytes;
    if (chunk.length > 0 && (chunk.length >= batchMoveSize || bytes + size > batchMoveBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(task);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/**
 * Whether `now` is `task` after a move to `to`: the new owner and incarnation, token one up.
 * Tokens never go back, so a consistent read showing it proves the move landed, whoever's
 * write it was.
 */
function movedTo(now: TaskItem | undefined, task: TaskHead, to: { owner: string | null; ownerInc: number }): now is TaskItem {
  return now !== undefined && now.owner === to.owner && now.ownerInc === to.ownerInc && now.token === task.token + 1;
}

export function defaultNodeId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60) || 'node';
  return `${host}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * One node of the cluster. Two loops run on the node's own clock:
 *
 *  - the counter loop: once per period, the token operation (heartbeat) that advances this
 *    node's counter and renews its lease; nothing else ever delays it;
 *  - maintenance, after each heartbeat: read the watched peers, judge their staleness against
 *    the benchmark, declare the stale ones dead (compare-and-set; one observer wins) and hand
 *    their tasks out, pick up tasks handed to this node, claim unowned tasks, rebalance.
 *
 * Self-fencing: every task stops once the lease (fenceMs from the *send* time of the last
 * successful heartbeat, on this node's monotonic clock) runs out, before any peer could
 * declare this node dead; config validation guarantees the margin.
 */
export class Worker extends EventEmitter<WorkerEvents> {
  readonly id: string;
  readonly config: KeeperConfig;
  readonly clock: Clock;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly handlers = new Map<string, Registration>();
  private readonly owned = new Map<string, Owned>();

  private phase: Phase = 'new';
  private inc = 0;
  private joinedAt = '';
  private counter = 0;
  /** Send time of the first attempt to write `counter + 1`, while no attempt has succeeded. */
  private firstAttemptAt: number | undefined;
  private readonly lease: Lease;
  /** The newest inbox value seen (heartbeat reply, inbox poll or ring) and the one acted on. */
  private latestInbox: number | undefined;
  private readonly doorbell: Doorbell | undefined;
  /** This incarnation's doorbell address, published in its node item. */
  private bell: string | undefined;
  /** Rings waiting to be answered, and the inbox values whose handovers rings told in full. */
  private rings: Ring[] = [];
  private readonly toldInboxes = new Set<number>();
  private detector!: Detector;
  private readonly runHost: RunHost;

  private nextTickAt = 0;
  private tickTimer: Timer | undefined;
  private maintaining: Promise<void> | undefined;
  private maintainAgain = false;
  private inboxAgain = false;
  private inboxTimer: Timer | undefined;
  private ticks = 0;

  /** Live ring successors (the neighbourhood), dead or departed members up to the first of them, cluster size. */
  private successors: string[] = [];
  /** Every other live node in ring order, when the cluster is small enough to know it whole. */
  private wholeRing: string[] | undefined;
  private gap: MemberEntry[] = [];
  private clusterSize = 1;
  private readonly emptySweeps = new Map<string, number>();
  /** When to sweep each tombstone that appeared in the gap (maintenance tick). */
  private readonly sweepAt = new Map<string, number>();
  private watched: string[] = [];
  private peers = new Map<string, NodeItem>();
  private neighboursDirty = true;
  private refreshAgainAt = Number.POSITIVE_INFINITY;
  private latestNeighbours: number | undefined;
  private processedNeighbours: number | undefined;
  private seenTasks = -1;
  /** Predecessors read as extra witnesses for a few periods after joining (see announce). */
  private warmupPeers: string[] = [];
  private warmupUntil = -1;
  private processedInbox = -1;
  private resyncPending = 0;
  private freeBacklog = false;
  /** Free tasks outside this node's arcs, with the period each was first seen free (see claimUnowned). */
  private readonly freeSeen = new Map<string, number>();
  /** Where the next look for stray free tasks starts: the ring goes round in pages. */
  private strayCursor: string | undefined;
  /** The last look for strays found some: look again next round. */
  private straysSeen = false;
  private roundsSinceStrays = 0;
  private readonly followUps: Array<{ node: string; atTick: number }> = [];
  /** Our own tasks whose move away had an unknown outcome, with the ownership that move expected. */
  private readonly unsettled = new Map<string, TaskOwnership>();
  /** joinedAt of each join write sent since the last successful join, with its send time. */
  private readonly joinAttempts = new Map<string, number>();
  /** Spreads the thinned cluster-item reads of a big cluster evenly over nodes. */
  private readonly phaseOffset: number;

  constructor(options: WorkerOptions) {
    super();
    const { store, clock, logger, random, doorbell, ...settings } = options;
    this.config = resolveConfig(typeof doorbell === 'boolean' ? { ...settings, doorbell } : settings);
    this.store = store;
    this.clock = clock ?? systemClock;
    this.log = logger ?? silentLogger;
    this.random = random ?? Math.random;
    this.id = this.config.nodeId ?? defaultNodeId();
    this.doorbell =
      typeof doorbell === 'object'
        ? doorbell
        : this.config.doorbell
          ? new UdpDoorbell({ port: this.config.doorbellPort, host: this.config.doorbellHost, warn: (message) => this.log.warn(message, { node: this.id }) })
          : undefined;
    this.detector = this.newDetector();
    this.runHost = this.createRunHost();
    this.lease = new Lease(this.clock, this.config.fenceMs, (since) => this.fence(since));
    this.phaseOffset = Math.floor(this.random() * 1_000_000);
  }

  /** What a TaskRun may do: check the lease and record outcomes while the task is still ours. */
  private createRunHost(): RunHost {
    return {
      nodeId: this.id,
      clock: this.clock,
      maxAttempts: this.config.maxAttempts,
      leaseValid: () => this.leaseValid(),
      backoffMs: (attempt) => this.backoffMs(attempt),
      recordFailure: async (task, error, maxAttempts) => {
        const attempts = task.attempts + 1;
        const failed = attempts >= maxAttempts;
        this.log.warn(failed ? 'task failed for good' : 'task handler threw; will retry', { node: this.id, task: task.id, attempts, error: errorText(error) });
        const patch = failed ? { attempts, state: 'failed' as const, error: errorText(error) } : { attempts, error: errorText(error) };
        const ok = await this.store.updateTask(task.id, task, patch).catch(() => false);
        if (!ok) return 'lost';
        const entry = this.owned.get(task.id);
        if (entry && !failed) entry.task = { ...entry.task, attempts };
        return failed ? 'failed' : 'retry';
      },
      recordDone: (task, result) => this.store.updateTask(task.id, task, { state: 'done', result: result ?? null }).catch(() => false),
      ended: (run, outcome) => {
        const entry = this.owned.get(run.taskId);
        if (outcome !== 'stopped' && entry?.run === run) this.owned.delete(run.taskId);
        this.emit('task-ended', { task: run.taskId, outcome });
      },
      onError: (message, error) => this.log.error(message, { node: this.id, error: errorText(error) }),
    };
  }

  private newDetector(): Detector {
    // A witness on the slowest clock ticks once per f^2 periods of the fastest observer.
    return new Detector(this.id, this.config.staleTicks, Math.ceil(this.config.driftBound ** 2) + 1);
  }

  /** Registers the handler for one task type; only types with a handler are claimed. */
  handle<P = unknown, R = unknown>(type: string, handler: TaskHandler<P, R>, options: HandlerOptions = {}): this {
    if (this.phase !== 'new') throw new Error('register handlers before start()');
    this.handlers.set(type, { handler: handler as TaskHandler, mode: options.mode ?? 'long-running', maxAttempts: options.maxAttempts });
    return this;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Joins the cluster and starts both loops. */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error('worker already started');
    this.phase = 'joining';
    this.bell = await this.doorbell?.open((ring) => this.onRing(ring));
    try {
      await this.join(true);
    } catch (error) {
      await this.doorbell?.close();
      throw error;
    }
    if (this.phase !== 'joining') return;
    this.phase = 'running';
    // Beat at once: the lease runs from the join write, and a slow start (announcing, a cold
    // table) must not eat into it.
    this.nextTickAt = this.clock.now();
    this.scheduleTick();
    this.scheduleInboxPoll();
    this.kickMaintenance();
  }

  /**
   * Graceful leave: stops every task, hands them straight to live peers (no detection wait),
   * then marks this incarnation as gone.
   */
  async stop(): Promise<void> {
    if (this.phase === 'stopped' || this.phase === 'leaving') return;
    const startedAt = this.clock.now();
    const wasRunning = this.phase === 'running';
    this.phase = 'leaving';
    await this.maintaining;
    const tasks = [...this.owned.values()].map((o) => o.task);
    await this.stopAllRuns('leaving');
    let handedOver = 0;
    if (wasRunning) {
      try {
        handedOver = await this.distribute(tasks, { exclude: this.id, reason: 'leave' });
        // Moves that timed out were settled back to us under a new token (or their outcome
        // is still unknown); try those again before leaving, rather than leave them to the
        // sweep.
        for (let round = 1; round <= 2 && handedOver < tasks.length; round++) {
          for (const id of this.unsettled.keys()) await this.settle(id);
          const left = (await this.store.tasksOwnedBy(this.id)).filter((t) => t.ownerInc === this.inc && !this.unsettled.has(t.id));
          if (left.length === 0) break;
          handedOver += await this.distribute(left, { exclude: this.id, reason: 'leave' });
        }
        if (await this.store.markLeft(this.id, this.inc)) await this.announce();
      } catch (error) {
        this.log.warn('graceful leave incomplete; peers will take over what is left', { error: errorText(error) });
      }
    }
    this.owned.clear();
    this.halt();
    this.emit('left', { handedOver, ms: this.clock.now() - startedAt });
    this.log.info('left the cluster', { node: this.id, handedOver });
  }

  /** Stops both loops and every task without telling anyone: what a crash looks like to peers. */
  async kill(): Promise<void> {
    this.halt();
    await this.stopAllRuns('killed');
    this.owned.clear();
  }

  private halt(): void {
    this.phase = 'stopped';
    this.tickTimer?.cancel();
    this.lease.cancel();
    this.inboxTimer?.cancel();
    void this.doorbell?.close();
  }

  // ------------------------------------------------------------------ joining

  private async join(firstStart: boolean): Promise<void> {
    for (let attempt = 1; this.phase === 'joining' || (!firstStart && this.phase === 'running'); attempt++) {
      try {
        if (firstStart && attempt === 1) await this.checkSettings();
        const existing = await this.store.getNode(this.id);
        const ours = existing && existing.state === 'alive' ? this.joinAttempts.get(existing.joinedAt) : undefined;
        if (existing && ours !== undefined) {
          // An earlier attempt of ours whose reply was lost landed after all: the lease runs
          // from that attempt's send time.
          await this.joined(existing, ours);
          return;
        }
        if (existing && existing.state === 'alive' && existing.inc !== this.inc) {
          await this.waitForHolder(existing);
          continue;
        }
        const sentAt = this.clock.now();
        const node: NodeItem = {
          id: this.id,
          // A fresh item gets a random incarnation so that (incarnation, counter) pairs of
          // an earlier item with the same id can never be mistaken for this one's.
          inc: existing ? existing.inc + 1 : 1 + Math.floor(this.random() * 2 ** 30),
          counter: Math.max(existing?.counter ?? 0, this.counter) + 1,
          state: 'alive',
          inbox: existing?.inbox ?? 0,
          neighbours: existing?.neighbours ?? 0,
          taskCount: 0,
          capacity: this.config.capacity,
          types: [...this.handlers.keys()],
          watch: existing?.watch ?? {},
          settings: this.settings(),
          joinedAt: new Date().toISOString(),
          ...(this.bell ? { bell: this.bell } : {}),
        };
        this.joinAttempts.set(node.joinedAt, sentAt);
        if (!(await this.joinAs(node, existing))) continue;
        await this.joined(node, sentAt);
        return;
      } catch (error) {
        // Only an unreachable or ambiguous store is worth waiting out; a missing table or
        // denied access is a configuration problem the operator has to see.
        if (!(error instanceof StoreUnavailableError || error instanceof AmbiguousWriteError)) throw error;
        this.log.warn('join failed; retrying', { node: this.id, attempt, error: errorText(error) });
        await sleep(this.clock, this.backoffMs(attempt));
      }
    }
  }

  private async joined(node: NodeItem, sentAt: number): Promise<void> {
    this.joinAttempts.clear();
    this.inc = node.inc;
    this.counter = node.counter;
    this.firstAttemptAt = undefined;
    this.joinedAt = node.joinedAt;
    this.detector = this.newDetector();
    this.detector.seed(node.watch);
    this.renew(sentAt);
    this.neighboursDirty = true;
    this.processedInbox = -1;
    this.toldInboxes.clear();
    await this.announce();
    this.emit('joined', { inc: this.inc });
    this.log.info('joined the cluster', { node: this.id, inc: this.inc, counter: this.counter });
  }

  private settings(): ProtocolSettings {
    const { periodMs, staleTicks, driftBound, fenceMs, handlerStopMs } = this.config;
    return { periodMs, staleTicks, driftBound, fenceMs, handlerStopMs };
  }

  /**
   * The safety bound holds only if every node detects and fences with the same settings: a
   * node with a longer fence window than its observers assume could still run a task after
   * they took it. So a node refuses to join next to live nodes that run different ones.
   */
  private async checkSettings(): Promise<void> {
    const { successors } = await readNeighbourhood(this.store, this.id, this.config.watchPeers);
    if (successors.length === 0) return;
    const { nodes } = await this.store.readNodes(successors.map((m) => m.id), { cluster: false });
    const mine = this.settings();
    for (const node of nodes.values()) {
      const theirs = node.settings;
      if (!theirs || node.state !== 'alive') continue;
      const differ = (Object.keys(mine) as Array<keyof ProtocolSettings>).filter((key) => theirs[key] !== mine[key]);
      if (differ.length === 0) continue;
      const show = (s: ProtocolSettings) => differ.map((key) => `${key} ${s[key]}`).join(', ');
      throw new ConfigError(
        `live node "${node.id}" runs with ${show(theirs)}, this node with ${show(mine)}: mixed settings break the safety bound; start every node with the same settings`,
      );
    }
  }

  /** The join write; after a lost reply the item itself tells whether it landed. */
  private async joinAs(node: NodeItem, existing: NodeItem | undefined): Promise<boolean> {
    try {
      return await this.store.joinNode(node, existing ? { inc: existing.inc, state: existing.state } : undefined);
    } catch (error) {
      if (!(error instanceof AmbiguousWriteError)) throw error;
      const now = await this.store.getNode(this.id);
      return now !== undefined && now.inc === node.inc && now.joinedAt === node.joinedAt && now.state === 'alive';
    }
  }

  /**
   * Our id is held by a live-looking incarnation: a previous run of this node that crashed,
   * or another process started with the same id by mistake. Watch its counter on our own
   * clock. If it moves, the id is in use; if it stands still for K of our periods after we
   * first saw it (at least (K-1)*P/f of real time, the same margin peers wait), it is dead
   * and we declare it so.
   */
  private async waitForHolder(holder: NodeItem): Promise<void> {
    this.log.warn('node id is held by a live-looking incarnation; checking whether it still runs', { node: this.id, inc: holder.inc });
    // A live holder moves its counter every period. A crashed one's last requests may still
    // land a little after it died, so one or two moves prove nothing: only a counter that
    // keeps moving means the id is in use; K still periods in a row mean it is dead.
    let last = holder.counter;
    let moves = 0;
    for (let still = 0; still < this.config.staleTicks; ) {
      await sleep(this.clock, this.config.periodMs);
      const now = await this.store.getNode(this.id);
      if (!now || now.state !== 'alive' || now.inc !== holder.inc) return;
      if (now.counter === last) {
        still += 1;
        continue;
      }
      last = now.counter;
      still = 0;
      if (++moves >= 3) {
        throw new NodeIdInUseError(`node id "${this.id}" is in use by another live process (its counter is advancing); choose another --node-id`);
      }
    }
    if (await this.store.declareDead(this.id, { inc: holder.inc, counter: last }, this.id)) {
      this.emit('declared-dead', { node: this.id, staleness: this.config.staleTicks });
    }
  }

  // ------------------------------------------------------------------ counter loop and lease

  private scheduleTick(): void {
    this.tickTimer = this.clock.setTimer(Math.max(0, this.nextTickAt - this.clock.now()), () => void this.tick());
  }

  private async tick(): Promise<void> {
    if (this.phase !== 'running' && this.phase !== 'leaving') return;
    const sentAt = this.clock.now();
    this.nextTickAt += this.config.periodMs;
    // After a pause, skip the missed beats instead of firing them all at once.
    if (this.nextTickAt < sentAt) this.nextTickAt = sentAt + this.config.periodMs;
    // The counter counts heartbeats that landed, never periods in which this node could not
    // reach the table: an observer's own outage must not become evidence against others
    // (after a store outage every counter would otherwise jump by the outage's length). A
    // failed attempt is repeated with the same value. It may have landed, and peers may have
    // seen the value since then: so the lease counts from the first attempt of a value, never
    // from a retry (renewing from the retry would let the lease outlive a peer's judgement).
    const next = this.counter + 1;
    this.firstAttemptAt ??= sentAt;
    try {
      const result = await this.store.heartbeat({
        id: this.id,
        inc: this.inc,
        joinedAt: this.joinedAt,
        counter: next,
        taskCount: this.owned.size,
        capacity: this.config.capacity,
        types: [...this.handlers.keys()],
        watch: this.detector.records(),
      });
      if (this.phase !== 'running' && this.phase !== 'leaving') return;
      if (!result.ok) {
        await this.becomeZombie(result.current);
        return;
      }
      const renewFrom = this.firstAttemptAt;
      this.counter = next;
      this.firstAttemptAt = undefined;
      this.renew(renewFrom);
      if (result.node) {
        this.latestInbox = result.node.inbox;
        this.latestNeighbours = result.node.neighbours;
      }
    } catch (error) {
      this.emit('heartbeat-failed', { error: errorText(error) });
      this.log.warn('heartbeat failed', { node: this.id, error: errorText(error) });
      this.lease.check();
    }
    if (this.phase === 'running' || this.phase === 'leaving') this.scheduleTick();
    if (this.phase === 'running') this.kickMaintenance();
  }

  /** True while the lease is valid on this node's monotonic clock. Synchronous by design. */
  leaseValid(): boolean {
    return this.phase !== 'stopped' && this.lease.valid();
  }

  private renew(sentAt: number): void {
    const outcome = this.lease.renew(sentAt);
    if (outcome === 'late') return;
    if (outcome === 'unfenced') {
      this.emit('unfenced', { tasks: this.owned.size });
      this.log.info('lease renewed; resuming tasks', { node: this.id, tasks: this.owned.size });
    }
    // Start every task we own that is not running: the ones stopped by fencing, and any that
    // arrived while the lease was out (startRun refuses to start those).
    for (const id of this.owned.keys()) this.startRun(id);
  }

  /** The lease ran out: stop every task before any peer may take them. */
  private fence(sinceRenewalMs: number): void {
    if (this.phase === 'stopped') return;
    this.emit('fenced', { sinceRenewalMs, tasks: this.owned.size });
    this.log.warn('lease expired; stopping all tasks until a heartbeat succeeds', { node: this.id, sinceRenewalMs: Math.round(sinceRenewalMs) });
    void this.stopAllRuns('fenced');
  }

  /** Our heartbeat was refused: we were declared dead (or replaced). Stop everything at once, rejoin. */
  private async becomeZombie(current: NodeItem | undefined): Promise<void> {
    this.emit('zombie', { declaredBy: current?.deadBy });
    this.log.warn('this incarnation was declared dead; stopping every task and rejoining', { node: this.id, inc: this.inc, declaredBy: current?.deadBy });
    this.lease.revoke();
    await this.stopAllRuns('declared dead');
    this.owned.clear();
    // Pending moves of the old incarnation's tasks race the new incarnation's reclaims, which
    // are conditional writes on the same state: nothing left to settle by hand.
    this.unsettled.clear();
    this.tickTimer?.cancel();
    await this.join(false);
    if (this.phase !== 'running') return;
    this.nextTickAt = this.clock.now();
    this.scheduleTick();
    this.kickMaintenance();
  }

  // ------------------------------------------------------------------ maintenance

  /**
   * Runs maintenance, one pass at a time: 'full' after each heartbeat, 'inbox' (only pick up
   * handed-over tasks) when the fast inbox poll saw a change.
   */
  private kickMaintenance(kind: 'full' | 'inbox' = 'full'): void {
    if (this.maintaining) {
      if (kind === 'full') this.maintainAgain = true;
      else this.inboxAgain = true;
      return;
    }
    this.maintaining = (kind === 'full' ? this.maintain() : this.pickUpHandover())
      .catch((error) => this.log.warn('maintenance failed', { node: this.id, error: errorText(error) }))
      .finally(() => {
        this.maintaining = undefined;
        if (this.phase !== 'running') return;
        if (this.maintainAgain) {
          this.maintainAgain = false;
          this.kickMaintenance('full');
        } else if (this.inboxAgain) {
          this.inboxAgain = false;
          this.kickMaintenance('inbox');
        }
      });
  }

  /**
   * With `inboxPollMs`, a cheap read of this node's inbox between heartbeats, so tasks handed
   * over by a leaving node or a detector start within that interval instead of at the next
   * period (half a read unit per poll: eventually consistent, one small attribute).
   */
  private scheduleInboxPoll(): void {
    const every = this.config.inboxPollMs;
    if (!every) return;
    this.inboxTimer = this.clock.setTimer(every, () => {
      if (this.phase !== 'running') return;
      void this.store
        .peekInbox(this.id)
        .then((inbox) => {
          if (inbox !== undefined && inbox !== this.processedInbox && inbox !== this.latestInbox) {
            this.latestInbox = inbox;
            this.kickMaintenance('inbox');
          }
        })
        .catch(() => {})
        .finally(() => this.scheduleInboxPoll());
    });
  }

  private async pickUpHandover(): Promise<void> {
    await this.answerRings();
    if (!this.inboxNeedsResync()) return;
    // Once more at the next period: the owner index may lag behind the handover.
    this.resyncPending = Math.max(this.resyncPending, 1);
    await this.resync();
  }

  /** A peer handed tasks to this node and rang: pick them up now, not at the next heartbeat. */
  private onRing(ring: Ring): void {
    if (ring.node !== this.id || this.phase !== 'running') return;
    // Bounded: under a flood, the inbox (read with every heartbeat) still tells of everything.
    if (this.rings.length >= maxWaitingRings) return;
    this.rings.push(ring);
    this.kickMaintenance('inbox');
  }

  /**
   * Reads the tasks the waiting rings name, with one consistent batch read, and takes in
   * those the table says are ours. A ring without task ids makes its inbox value news, for
   * a resync. The indexes are not involved, so this needs no second look for index lag.
   */
  private async answerRings(): Promise<void> {
    // At most maxRungTasks task ids per pass (a flood of rings must not turn into a flood of
    // reads); the rest wait for the next pass.
    let take = 0;
    for (let named = 0; take < this.rings.length; take++) {
      named += this.rings[take]!.tasks?.length ?? 0;
      if (take > 0 && named > maxRungTasks) break;
    }
    const rings = this.rings.splice(0, take);
    if (rings.length === 0) return;
    if (this.rings.length > 0) this.inboxAgain = true;
    const ids = [...new Set(rings.flatMap((r) => r.tasks ?? []))];
    const now = await this.takeInFromTable(ids).catch(() => undefined);
    if (!now) return; // the heartbeat's inbox still tells of them
    // A ring counts as told only if every task it names is this incarnation's now. Anything
    // else is left to a resync: a move whose outcome the mover did not know may still land,
    // and tasks handed to an earlier incarnation of this node are reclaimed there.
    const ours = (id: string) => {
      const task = now.get(id);
      return task !== undefined && this.isMine(task);
    };
    for (const ring of rings) {
      if (ring.tasks?.every(ours)) this.toldInboxes.add(ring.inbox);
      else if (ring.inbox > (this.latestInbox ?? -1)) this.latestInbox = ring.inbox;
    }
  }

  /**
   * Whether the inbox moved on in a way only a resync can answer, marking it seen. Each
   * notification bumps the inbox by one; when rings told of every value since the last one
   * acted on (with their tasks), those tasks are already taken in and nothing is left to find.
   */
  private inboxNeedsResync(): boolean {
    const latest = this.latestInbox;
    if (latest === undefined || latest === this.processedInbox) return false;
    const from = this.processedInbox;
    this.processedInbox = latest;
    let told = from >= 0 && latest - from <= maxToldSpan;
    for (let value = from + 1; told && value <= latest; value++) told = this.toldInboxes.has(value);
    for (const value of this.toldInboxes) if (value <= latest) this.toldInboxes.delete(value);
    return !told;
  }

  private periodic(): boolean {
    return this.ticks % this.config.resyncTicks === 0;
  }

  private async maintain(): Promise<void> {
    this.ticks += 1;
    if (this.latestNeighbours !== undefined && this.latestNeighbours !== this.processedNeighbours) {
      this.processedNeighbours = this.latestNeighbours;
      this.neighboursDirty = true;
      // And once more shortly: the members index may not show the newcomer yet.
      this.refreshAgainAt = this.ticks + 2;
    }
    if (this.neighboursDirty || this.periodic() || this.ticks >= this.refreshAgainAt) await this.refreshNeighbourhood();
    if (this.phase !== 'running') return;

    const witnesses = this.ticks <= this.warmupUntil ? this.warmupPeers.filter((id) => !this.watched.includes(id)) : [];
    const { nodes, cluster } = await this.store.readNodes([...this.watched, ...witnesses], { cluster: this.readsClusterNow() });
    if (this.phase !== 'running') return;
    for (const id of this.watched) if (nodes.get(id)?.state !== 'alive') this.neighboursDirty = true;
    this.peers = nodes;
    this.detector.observe(this.counter, nodes, this.watched);

    for (const suspect of this.detector.suspects()) {
      if (this.phase !== 'running' || !this.leaseValid()) break;
      if (!(await this.declare(suspect))) {
        this.detector.forget(suspect.id);
        continue;
      }
      this.detector.forget(suspect.id);
      this.neighboursDirty = true;
      this.emit('declared-dead', { node: suspect.id, staleness: suspect.staleness });
      this.log.warn('declared peer dead', { node: this.id, peer: suspect.id, staleness: suspect.staleness, counter: suspect.counter });
      await this.takeOver(suspect.id);
      // Look again shortly: a peer may have handed it a task just before it was declared
      // dead, and on DynamoDB the owner index may lag behind the table.
      for (const after of [2, 6]) this.followUps.push({ node: suspect.id, atTick: this.ticks + after });
    }
    for (const due of this.followUps.filter((f) => f.atTick <= this.ticks)) {
      this.followUps.splice(this.followUps.indexOf(due), 1);
      await this.takeOver(due.node, true);
    }

    for (const id of [...this.unsettled.keys()]) {
      const now = await this.settle(id);
      if (now && this.isMine(now) && !this.unsettled.has(id)) this.adopt(now);
    }

    await this.answerRings();
    // Twice: indexes are eventually consistent, and a handover may not be visible at once.
    if (this.inboxNeedsResync()) this.resyncPending = 2;
    if (this.resyncPending > 0 || this.periodic()) {
      this.resyncPending = Math.max(0, this.resyncPending - 1);
      await this.resync();
    }
    const tasksChanged = cluster !== undefined && cluster.tasks !== this.seenTasks;
    if (cluster) this.seenTasks = cluster.tasks;
    const placed = tasksChanged || this.freeBacklog || this.periodic() ? await this.claimUnowned() : 0;
    // Not in a period that placed new work: claims already go to the least loaded, and
    // moving running tasks meanwhile would only restart them.
    if (this.config.takeover === 'balanced' && placed === 0) await this.rebalance();
    if (this.periodic() || [...this.sweepAt.values()].some((at) => at <= this.ticks)) await this.sweepTombstones();
  }

  /**
   * The compare-and-set that decides who detected a failure first. If its reply is lost, the
   * item itself says whether we won: state 'dead' with deadBy = us.
   */
  private async declare(suspect: { id: string; inc: number; counter: number }): Promise<boolean> {
    try {
      return await this.store.declareDead(suspect.id, suspect, this.id);
    } catch (error) {
      if (!(error instanceof AmbiguousWriteError)) throw error;
      for (let attempt = 1; attempt <= 3; attempt++) {
        const item = await this.store.getNode(suspect.id).catch(() => undefined);
        if (item) return item.state === 'dead' && item.deadBy === this.id && item.inc === suspect.inc;
        await sleep(this.clock, this.backoffMs(attempt));
      }
      // Still unknown: if we did win, the tombstone sweep hands the tasks out.
      return false;
    }
  }

  private async refreshNeighbourhood(): Promise<void> {
    const known = Math.max(this.config.watchPeers, spreadPeers);
    // Walk the whole ring only where it is small: a large cluster keeps O(k) membership reads.
    const view = await readNeighbourhood(this.store, this.id, this.clusterSize <= wholeRingMax ? Math.max(known, wholeRingMax) : known);
    this.neighboursDirty = false;
    if (this.ticks >= this.refreshAgainAt) this.refreshAgainAt = Number.POSITIVE_INFINITY;
    this.successors = view.successors.slice(0, known).map((m) => m.id);
    this.wholeRing = view.complete ? view.successors.map((m) => m.id) : undefined;
    for (const tomb of view.gap) {
      // A departed node's leftovers can be swept at once; a dead one's only after its
      // declarer had time to hand them out and look again (follow-ups at 2 and 6 periods).
      if (!this.gap.some((t) => t.id === tomb.id && t.state === tomb.state)) this.sweepAt.set(tomb.id, this.ticks + (tomb.state === 'left' ? 1 : 8));
    }
    this.gap = view.gap;
    this.clusterSize = view.size;
    this.watched = this.successors.slice(0, this.config.watchPeers);
  }

  /** Tells the live predecessors (the nodes that watch this one) that the ring changed here. */
  private async announce(): Promise<void> {
    try {
      const predecessors = await livePredecessors(this.store, this.id, this.config.watchPeers);
      // They watch the peers this node now watches, and publish what they have seen: read
      // them too for K periods, so this node need not watch a dead peer for a full window.
      this.warmupPeers = predecessors.map((m) => m.id);
      this.warmupUntil = this.ticks + this.config.staleTicks + 1;
      await Promise.all(predecessors.map((m) => this.store.notifyNeighbours(m.id).catch(() => {})));
    } catch (error) {
      // Their periodic refresh will find us anyway.
      this.log.warn('could not tell ring neighbours about a change', { node: this.id, error: errorText(error) });
    }
  }

  /**
   * Every node reads the cluster item's change counter, so in a big cluster those reads are
   * thinned to about a thousand per second in all (one item can serve 3,000 read units per
   * second); unowned tasks are then found within size/1000 periods.
   */
  private readsClusterNow(): boolean {
    const every = Math.max(1, Math.round(this.clusterSize / 1000));
    return every === 1 || (this.ticks + this.phaseOffset) % every === 0;
  }

  // ------------------------------------------------------------------ takeover and handover

  private async takeOver(deadId: string, followUp = false): Promise<void> {
    const startedAt = this.clock.now();
    const tasks = await this.orphansOf(deadId);
    if (followUp && tasks.length === 0) return;
    const moved = await this.distribute(tasks, { exclude: deadId, reason: 'takeover' });
    const ms = this.clock.now() - startedAt;
    this.emit('takeover', { node: deadId, tasks: tasks.length, moved, ms });
    this.log.info('took over tasks of dead node', { node: this.id, dead: deadId, tasks: tasks.length, moved, ms: Math.round(ms) });
  }

  /**
   * Tasks held under a node id by an incarnation that is gone. The id may already have
   * rejoined as a new incarnation: that one's tasks are its own and are never taken.
   *
   * The tasks are read before the node item, never after: a node item read first can be
   * overtaken by a rejoin while this process stalls (GC pause, SIGSTOP), and the "dead" item
   * would then condemn the new incarnation's tasks (chaos finding 9). Read second, the item
   * is at least as new as every listed owner: if it is alive, only its own incarnation's
   * tasks are live; if it is not, no listed task belongs to a live incarnation.
   */
  private async orphansOf(nodeId: string): Promise<TaskHead[]> {
    const listed = await this.store.tasksOwnedBy(nodeId);
    if (listed.length === 0) return [];
    const item = await this.store.getNode(nodeId);
    const liveInc = item?.state === 'alive' ? item.inc : undefined;
    return listed.filter((t) => t.ownerInc !== liveInc);
  }

  /**
   * Live candidates for new tasks: this node with its exact load, and (balanced) every other
   * live node; `exclude` is the node the tasks come from, never a candidate.
   */
  private async candidates(exclude?: string): Promise<Candidate[]> {
    const self: Candidate = { id: this.id, inc: this.inc, load: this.owned.size, capacity: this.config.capacity, types: [...this.handlers.keys()] };
    const out: Candidate[] = exclude === this.id || this.phase !== 'running' ? [] : [self];
    if (this.config.takeover === 'detector' && out.length > 0) return out;
    const others = this.successors.filter((id) => id !== exclude);
    if (others.length === 0) return out;
    const { nodes } = await this.store.readNodes(others, { cluster: false });
    for (const node of nodes.values()) {
      if (node.state !== 'alive' || node.id === exclude) continue;
      out.push({ id: node.id, inc: node.inc, load: node.taskCount, capacity: node.capacity, types: node.types });
    }
    return out;
  }

  /**
   * Moves tasks from their current (dead, departing or orphaned) owner to live nodes, in
   * parallel; tasks no node can take go back to the pool. Returns how many moved.
   *
   * Two or more tasks for one peer go as one transaction (up to 25 tasks): one request
   * instead of one per task, which is what a large takeover or a leave waits on, on the store
   * and on the mover's CPU (DynamoDB bills it as two writes per task; moves are rare). Each
   * receiver is told as soon as a batch of its tasks has landed, so it can start them while
   * the rest still move. A refused or ambiguous transaction is redone task by task: each
   * single move either lands or finds that the transaction did (same owner, token one up),
   * and once a task's token has moved, the transaction can no longer land. Tasks for this
   * node go the same way (one by one for claims, at half the write units), then one
   * consistent batch read returns the items to run.
   */
  private async distribute(tasks: TaskHead[], how: { exclude?: string; reason: string; unplaced?: 'pool' | 'leave'; selfSingly?: boolean }): Promise<number> {
    if (tasks.length === 0) return 0;
    const candidates = await this.candidates(how.exclude);
    const { assigned, unplaced } = placeTasks(tasks, candidates);
    const incOf = new Map(candidates.map((c) => [c.id, c.inc]));
    /** `landedUnseen`: the task was in a transaction whose outcome is unknown, which may have moved it already. */
    type Job = { task: TaskHead; to: string | null; inc: number; landedUnseen?: boolean };
    // Free tasks nobody can take stay where they are; anyone else's go back to the pool.
    const toPool = how.unplaced === 'leave' ? [] : unplaced;
    const singles: Job[] = toPool.map((task) => ({ task, to: null, inc: 0 }));
    const batches: Array<{ to: string; inc: number; tasks: TaskHead[] }> = [];
    for (const [target, list] of assigned) {
      const inc = target === this.id ? this.inc : (incOf.get(target) ?? 0);
      const chunks = target === this.id && how.selfSingly ? list.map((task) => [task]) : transactionChunks(list);
      for (const chunk of chunks) {
        if (chunk.length === 1) singles.push({ task: chunk[0]!, to: target, inc });
        else batches.push({ to: target, inc, tasks: chunk });
      }
    }
    // Landed moves each receiver has not been told of yet: a batch tells its receiver at once,
    // the rest are told at the end, each receiver once.
    const untold = new Map<string, string[]>();
    const landedFor = (to: string, ids: string[]) => untold.set(to, [...(untold.get(to) ?? []), ...ids]);
    const tell = async (to: string) => {
      const ids = untold.get(to) ?? [];
      untold.delete(to);
      if (!(await this.tell(to, ids))) landedFor(to, ids);
    };
    let moved = 0;
    const moveOne = async ({ task, to, inc, landedUnseen }: Job) => {
      try {
        let unsure = false;
        let after = await this.move(task, { owner: to, ownerInc: inc }, () => (unsure = true));
        // Its outcome unknown: the receiver is told, and looks until it lands or is refused.
        if (!after && unsure && to !== null && to !== this.id) landedFor(to, [task.id]);
        // Refused because the transaction did land: the receiver still has to be told. (After
        // an unknown outcome, move() has read the task already.)
        if (!after && landedUnseen && !unsure) {
          const now = await this.store.getTask(task.id);
          if (movedTo(now, task, { owner: to, ownerInc: inc })) after = now;
        }
        if (!after) return;
        moved += 1;
        if (to === this.id) this.adopt(after);
        else if (to !== null) landedFor(to, [task.id]);
      } catch (error) {
        // Ambiguous or unavailable: the tombstone sweep (or the target's resync) finds it later.
        this.log.warn(`${how.reason}: could not move task`, { node: this.id, task: task.id, error: errorText(error) });
      }
    };
    const redo: Job[] = [];
    const early: Array<Promise<void>> = [];
    await Promise.all([
      forEachLimit(batches, batchMoveLanes, async ({ to, inc, tasks: chunk }) => {
        let failure: unknown;
        let landed = await this.store.moveTasks(chunk.map((task) => ({ id: task.id, from: task })), { owner: to, ownerInc: inc }).catch((error: unknown) => {
          failure = error;
          return false;
        });
        const landedUnseen = failure instanceof AmbiguousWriteError;
        if (landedUnseen) {
          // A transaction lands whole or not at all, and one that timed out on a busy store has
          // often landed by then: one consistent read of its tasks says so, where redoing them
          // costs a refused write and a read per task. If it has not landed (yet), the single
          // moves below race it, and each task's token lets exactly one of them win.
          const now = await this.store.getTasks(chunk.map((task) => task.id)).catch(() => undefined);
          landed = now !== undefined && chunk.every((task) => movedTo(now.get(task.id), task, { owner: to, ownerInc: inc }));
        }
        if (landed) {
          moved += chunk.length;
          if (to === this.id) {
            early.push(this.adoptLanded(chunk.map((task) => task.id)));
          } else {
            landedFor(to, chunk.map((task) => task.id));
            early.push(tell(to));
          }
        } else {
          this.log.warn(`${how.reason}: batch move failed; moving its tasks one by one`, { node: this.id, to, tasks: chunk.length, error: failure === undefined ? 'refused' : errorText(failure) });
          // Told even if every redo fails: a transaction that landed unseen must not wait for
          // the periodic resync (this node itself looks at its next two resyncs).
          if (landedUnseen && to === this.id) this.resyncPending = Math.max(this.resyncPending, 2);
          else if (landedUnseen) landedFor(to, chunk.map((task) => task.id));
          redo.push(...chunk.map((task) => ({ task, to, inc, landedUnseen })));
        }
      }),
      forEachLimit(singles, moveConcurrency, moveOne),
    ]);
    await forEachLimit(redo, moveConcurrency, moveOne);
    await Promise.all(early);
    await Promise.all([...untold.keys()].map(tell));
    if (toPool.length > 0) await this.store.bumpCluster('tasks').catch(() => {});
    return moved;
  }

  /**
   * Starts the tasks a transaction moved to this node: a transaction returns no items, so one
   * consistent batch read fetches them (instead of one single write per task, each returning
   * its item). If the read fails, the next resync finds them.
   */
  private async adoptLanded(ids: string[]): Promise<void> {
    const now = await this.store.getTasks(ids).catch(() => undefined);
    if (!now) {
      this.resyncPending = Math.max(this.resyncPending, 1);
      return;
    }
    for (const id of ids) {
      const task = now.get(id);
      if (task) this.adopt(task);
    }
  }

  /**
   * Tells a node that tasks were handed to it: bumps its inbox in the table (what it is sure
   * to see, with its next heartbeat), then rings its doorbell with the new inbox value and
   * the tasks, so that it can start them now. False if the table could not be told.
   */
  private async tell(to: string, tasks: string[]): Promise<boolean> {
    const reply = await this.store.notify(to).catch(() => null);
    if (reply === null) return false;
    if (reply?.bell && this.doorbell) this.doorbell.ring(reply.bell, { node: to, inbox: reply.inbox, tasks });
    return true;
  }

  /**
   * A task's compare-and-set move. The store already recognises its own effect when a retry
   * follows an ambiguous attempt; if every attempt was ambiguous, re-read and reconcile here
   * instead of assuming failure (a move that did land must not leave the task unrun).
   */
  private async move(task: TaskHead, to: { owner: string | null; ownerInc: number }, unsure?: () => void): Promise<TaskItem | undefined> {
    try {
      return await this.store.moveTask(task.id, task, to);
    } catch (error) {
      if (!(error instanceof AmbiguousWriteError)) throw error;
      if (task.owner === this.id && task.ownerInc === this.inc && to.owner !== this.id) {
        // One of our own tasks on its way out: a read proves nothing, settle it (see settle()).
        this.unsettled.set(task.id, { owner: task.owner, ownerInc: task.ownerInc, token: task.token });
        const now = await this.settle(task.id);
        return movedTo(now, task, to) ? now : undefined;
      }
      // Anyone else's task (a claim, a takeover): the write may still land, so the new owner
      // must look again: this node at its next two resyncs, another node once told (unsure).
      // Nobody runs the task meanwhile.
      const now = await this.store.getTask(task.id).catch(() => undefined);
      if (movedTo(now, task, to)) return now;
      if (to.owner === this.id) this.resyncPending = Math.max(this.resyncPending, 2);
      unsure?.();
      return undefined;
    }
  }

  /**
   * Settles a move of one of our own tasks whose outcome is unknown. Such a write may still
   * land at any time: a request the client gave up on is not cancelled, so a read that shows
   * the task still here proves nothing, and running it again could let the late write hand
   * it to a peer that runs it too. A conditional write on the same expected state settles it:
   * it keeps the task here under a new token, and of the two writes exactly one can win. Once
   * the token has moved past the expected one, the pending write can never land. Until then
   * the task does not run here (see adopt()).
   */
  private async settle(id: string): Promise<TaskItem | undefined> {
    const expected = this.unsettled.get(id);
    if (!expected) return this.store.getTask(id).catch(() => undefined);
    try {
      const kept = await this.store.moveTask(id, expected, { owner: this.id, ownerInc: this.inc });
      if (kept) {
        this.unsettled.delete(id);
        return kept;
      }
      const now = await this.store.getTask(id);
      // Not where we expected it: the token moved on (or the task ended), so nothing of ours is pending.
      this.unsettled.delete(id);
      return now;
    } catch {
      return undefined; // still unknown; tried again next period
    }
  }

  /**
   * Reconciles this node's view of its tasks with the table: adopts tasks handed to it,
   * reclaims tasks of its own earlier incarnations, stops tasks that are no longer its own.
   */
  private async resync(): Promise<void> {
    const listed = await this.store.tasksOwnedBy(this.id);
    const seen = new Set<string>();
    const unknown: string[] = [];
    for (const task of listed) {
      if (task.ownerInc === this.inc) {
        seen.add(task.id);
        if (!this.owned.has(task.id)) unknown.push(task.id);
        else if (task.releaseRequested) await this.release(task.id, task);
      } else if (task.ownerInc < this.inc) {
        // Left behind by an earlier incarnation of this node, which has stopped for good.
        const after = await this.move(task, { owner: this.id, ownerInc: this.inc }).catch(() => undefined);
        if (after) {
          seen.add(task.id);
          this.adopt(after);
        }
      }
    }
    // The index holds no payloads: the tasks this node does not run yet come from the table,
    // which also says whether each is still ours and ready.
    await this.takeInFromTable(unknown);
    // The index may lag; confirm with a consistent read before stopping anything.
    for (const id of [...this.owned.keys()]) {
      if (seen.has(id)) continue;
      const task = await this.store.getTask(id);
      if (task && this.isMine(task)) {
        if (task.releaseRequested) await this.release(id, task);
        continue;
      }
      await this.drop(id, 'revoked');
    }
  }

  /**
   * Reads tasks with one consistent batch read and takes in those the table says are this
   * incarnation's (a ring's tasks, or listed ones this node does not run yet). Returns what it read.
   */
  private async takeInFromTable(ids: readonly string[]): Promise<Map<string, TaskItem>> {
    const now = ids.length > 0 ? await this.store.getTasks(ids) : new Map<string, TaskItem>();
    for (const id of ids) {
      const task = now.get(id);
      if (task && this.isMine(task) && this.phase === 'running') await this.takeIn(task);
    }
    return now;
  }

  /** A task of this incarnation, as the table lists it: run it, unless it must go back. */
  private async takeIn(task: TaskItem): Promise<void> {
    if (task.releaseRequested) await this.release(task.id, task);
    else if (this.owned.has(task.id)) return;
    // Handed over on load figures that were a period old: never run past capacity,
    // give the excess back to the pool instead.
    else if (this.owned.size >= this.config.capacity) await this.release(task.id, task);
    else this.adopt(task);
  }

  /** Operator's force-release: stop the task, then put it back in the pool for others. */
  private async release(id: string, task: TaskHead): Promise<void> {
    await this.drop(id, 'released');
    const after = await this.move(task, { owner: null, ownerInc: 0 }).catch(() => undefined);
    if (after) await this.store.bumpCluster('tasks').catch(() => {});
  }

  /**
   * Claims free tasks, reading only a bounded part of the pool however large the cluster:
   *
   * 1. This node's own arc of the ring (claimArcs), and the arcs of the watched successors
   *    right after it that cannot take tasks now (full, or not running every type this node
   *    runs). Where views agree, every free task has exactly one such claimant,
   *    and the claimants' reads do not overlap.
   * 2. With room to spare, one page of the rest of the pool, a little further round the ring
   *    each time. A task seen there that is still free two periods after this node first
   *    saw it was left by its claimant (full, unable to run its type, or with a different
   *    view of the ring), and anyone may take it.
   *
   * Returns how many free tasks this round placed (on this node or its successors).
   */
  private async claimUnowned(): Promise<number> {
    let spare = this.config.capacity - this.owned.size;
    this.freeBacklog = false;
    if (spare <= 0 || this.handlers.size === 0) return 0;
    // Until this round has read what it needs: if a read fails, look again next period
    // rather than wait for the next change of the cluster counter.
    this.freeBacklog = true;
    const arcs = claimArcs(this.id, this.wholeRing ?? this.successors, this.wholeRing !== undefined);
    let reach = 1;
    while (reach < arcs.length && reach <= this.config.watchPeers && !this.canClaimAll(arcs[reach]!.owner)) reach++;
    const mineRange = { from: arcs[0]!.from, to: arcs[reach - 1]!.to };
    const limit = Math.min(spare * 4, 1000);
    const inRange = await this.store.unownedTasks(limit, mineRange);
    const mine = inRange.filter((task) => {
      if (!this.handlers.has(task.type)) return false;
      const slot = taskSlot(task.id);
      const arc = arcs.slice(0, reach).find((a) => inArc(slot, a));
      // A successor that runs this type and has room claims its own arc's tasks.
      return arc === undefined || arc.owner === this.id || !this.canClaim(arc.owner, task.type);
    });
    let placed: number;
    if (this.wholeRing) {
      placed = await this.claim(mine.slice(0, spare));
      spare -= placed;
    } else {
      // Arcs are uneven in a large cluster (the largest about ln n times the mean), so the
      // node deals its arc's tasks out over itself and its successors, least loaded first, as
      // a takeover does: a backlog spreads evenly at once instead of landing on the nodes
      // with the largest arcs and being moved again by rebalancing.
      const before = this.owned.size;
      // Claims are not urgent: this node's own share goes one write unit per task, not two.
      placed = await this.distribute(mine, { reason: 'claim', unplaced: 'leave', selfSingly: true });
      spare -= this.owned.size - before;
    }
    // More to read in our range, tasks left or refused (another node's view of the ring
    // differed, or nobody had room).
    let backlog = inRange.length >= limit || placed < mine.length;

    // Strays: whenever this round found nothing of its own to place, and while the last look
    // found some; a node busy with its own arc (tasks being added) looks every few rounds.
    if (spare > 0 && (this.straysSeen || placed === 0 || ++this.roundsSinceStrays >= strayEvery)) {
      this.roundsSinceStrays = 0;
      this.straysSeen = false;
      const from = this.strayCursor ?? mineRange.to;
      const page = await this.store.unownedTasks(strayPage, { from, to: from });
      this.strayCursor = page.length > 0 ? taskSlot(page[page.length - 1]!.id) : undefined;
      const stray: TaskHead[] = [];
      for (const task of page) {
        if (!this.handlers.has(task.type) || inArc(taskSlot(task.id), mineRange)) continue;
        const firstSeen = this.freeSeen.get(task.id) ?? this.ticks;
        this.freeSeen.set(task.id, firstSeen);
        if (this.ticks - firstSeen >= 2) stray.push(task);
        this.straysSeen = true;
        backlog = true;
      }
      placed += await this.claim(stray.slice(0, spare));
    } else if (spare > 0) {
      // Not looked at this round: the next one will (it finds nothing of its own, or is due).
      backlog = true;
    }
    // Forget sightings old enough that the task has surely been claimed or finished since.
    for (const [id, seen] of this.freeSeen) if (this.ticks - seen > 2 * this.config.resyncTicks) this.freeSeen.delete(id);
    this.freeBacklog = backlog;
    return placed;
  }

  /** Moves free tasks to this node, adopting each that lands; returns how many did. */
  private async claim(tasks: readonly TaskHead[]): Promise<number> {
    let claimed = 0;
    await forEachLimit(tasks, moveConcurrency, async (task) => {
      const after = await this.move(task, { owner: this.id, ownerInc: this.inc }).catch(() => {
        // The claim may have landed unseen: look at our own tasks next period rather than
        // leave it owned and unrun until the periodic resync.
        this.resyncPending = Math.max(this.resyncPending, 1);
        return undefined;
      });
      if (after) {
        claimed += 1;
        this.freeSeen.delete(task.id);
        this.adopt(after);
      }
    });
    return claimed;
  }

  /**
   * Whether a successor, as last read, would claim a free task of this type itself. Unread
   * (not watched, or not read yet) counts as yes; so does one that may have died, until it is
   * declared dead: its tasks wait for that anyway, and the strays rule covers the rest.
   */
  private canClaim(id: string, type: string): boolean {
    const peer = this.peers.get(id);
    return peer === undefined || (peer.state === 'alive' && peer.taskCount < peer.capacity && peer.types.includes(type));
  }

  /** Whether a watched successor would claim every type this node runs (so its arc is not ours to read). */
  private canClaimAll(id: string): boolean {
    return [...this.handlers.keys()].every((type) => this.canClaim(id, type));
  }

  /**
   * Diffusion along the ring: hand a few tasks to a watched successor that carries fewer.
   * Uses only what this node reads anyway, so balancing costs no extra reads.
   */
  private async rebalance(): Promise<void> {
    if (!this.leaseValid()) return;
    let budget = this.config.maxMovesPerTick;
    for (const [index, id] of this.watched.entries()) {
      if (budget <= 0) return;
      const peer = this.peers.get(id);
      // Only to a peer seen advancing just now: a task handed to a node that has just died
      // would wait for the tombstone sweep.
      if (!peer || peer.state !== 'alive' || !this.detector.advancing(id)) continue;
      const count = rebalanceCount(this.owned.size, peer.taskCount, peer.capacity - peer.taskCount, this.config.watchPeers, budget, index === 0);
      if (count === 0) continue;
      // Never a task straight back to the node it came from; and tasks that hash towards
      // the peer first, so the same tasks would move again if anything.
      const movable = [...this.owned.values()]
        .filter((o) => this.ticks - o.since >= rebalanceHoldTicks)
        .map((o) => o.task)
        .filter((t) => peer.types.includes(t.type) && t.previousOwner !== id)
        .sort((a, b) => Number(rendezvous(b.id, [this.id, id]) === id) - Number(rendezvous(a.id, [this.id, id]) === id))
        .slice(0, count);
      if (movable.length === 0) continue;
      budget -= movable.length;
      const moved: string[] = [];
      await forEachLimit(movable, moveConcurrency, async (task) => {
        await this.drop(task.id, 'rebalanced');
        const after = await this.move(task, { owner: id, ownerInc: peer.inc }).catch(() => undefined);
        if (after) moved.push(task.id);
        else await this.resyncOne(task.id);
      });
      if (moved.length > 0) {
        await this.tell(id, moved);
        this.emit('rebalanced', { to: id, tasks: moved.length });
      }
    }
  }

  /** After a failed or ambiguous move of one of our tasks: re-read it and take it back if still ours. */
  private async resyncOne(id: string): Promise<void> {
    const task = await this.store.getTask(id).catch(() => undefined);
    if (task && this.isMine(task)) this.adopt(task);
  }

  /** Whether the table says this incarnation should run the task. */
  private isMine(task: TaskItem): boolean {
    return task.owner === this.id && task.ownerInc === this.inc && task.state === 'ready';
  }

  /**
   * Backstop for takeovers that did not finish (the detector died mid-way, a move was
   * ambiguous, an index lagged): tasks still owned by dead or departed nodes are handed out
   * by their nearest live predecessor on the ring (exactly one node has a given tombstone in
   * its gap), and empty tombstones are removed.
   */
  private async sweepTombstones(): Promise<void> {
    for (const id of this.sweepAt.keys()) if (!this.gap.some((t) => t.id === id)) this.sweepAt.delete(id);
    for (const tomb of this.gap) {
      if (this.phase !== 'running') return;
      const due = this.sweepAt.get(tomb.id);
      if (due !== undefined && due > this.ticks && !this.periodic()) continue;
      this.sweepAt.delete(tomb.id);
      const tasks = await this.orphansOf(tomb.id);
      if (tasks.length > 0) {
        this.emptySweeps.delete(tomb.id);
        const moved = await this.distribute(tasks, { exclude: tomb.id, reason: 'sweep' });
        this.log.info('swept tasks of a departed node', { node: this.id, departed: tomb.id, tasks: tasks.length, moved });
        continue;
      }
      const empty = (this.emptySweeps.get(tomb.id) ?? 0) + 1;
      this.emptySweeps.set(tomb.id, empty);
      if (empty < 2) continue;
      const item = await this.store.getNode(tomb.id);
      if (item && item.state !== 'alive' && (await this.store.removeNode(tomb.id, { inc: item.inc, state: item.state }))) {
        this.emptySweeps.delete(tomb.id);
      }
    }
  }

  // ------------------------------------------------------------------ running tasks

  private adopt(task: TaskItem): void {
    // Also refuses a task moved to an earlier incarnation of this node by a maintenance pass
    // that was still under way when this incarnation was declared dead: its replies can
    // arrive after the rejoin, and that incarnation's tasks are orphans now.
    if (this.phase !== 'running' || !this.isMine(task)) return;
    const pending = this.unsettled.get(task.id);
    if (pending && task.token <= pending.token) {
      // An outgoing move of this task may still land: settle before running it again.
      void this.settle(task.id).then((now) => {
        if (now && this.isMine(now) && !this.unsettled.has(task.id)) this.adopt(now);
      });
      return;
    }
    const existing = this.owned.get(task.id);
    if (existing && existing.task.token === task.token) return;
    if (existing?.run) void existing.run.stop('superseded');
    this.owned.set(task.id, { task, since: this.ticks });
    if (!this.handlers.has(task.type)) {
      // Not ours to run (no handler): put it back for a node that has one.
      void this.release(task.id, task);
      return;
    }
    this.startRun(task.id);
  }

  private startRun(id: string): void {
    const entry = this.owned.get(id);
    const registration = entry && this.handlers.get(entry.task.type);
    if (!entry || !registration || (entry.run && !entry.run.aborted)) return;
    // Only a running node with a valid lease starts tasks: not while fenced, and not while
    // leaving (the heartbeats that go on during a leave renew the lease).
    if (this.phase !== 'running' || !this.leaseValid()) return;
    entry.run = new TaskRun(entry.task, registration, this.runHost);
    this.emit('task-started', { task: id, token: entry.task.token });
  }

  /** Stops a task's run (waiting for the handler to return) and forgets the task. */
  private async drop(id: string, reason: string): Promise<void> {
    const entry = this.owned.get(id);
    this.owned.delete(id);
    await entry?.run?.stop(reason);
  }

  private async stopAllRuns(reason: string): Promise<void> {
    const runs = [...this.owned.values()].map((o) => o.run).filter((r): r is TaskRun => r !== undefined);
    await Promise.all(runs.map((r) => r.stop(reason)));
  }

  backoffMs(attempt: number): number {
    // Full jitter, doubling per attempt, capped.
    return this.random() * Math.min(this.config.retryMaxMs, this.config.retryBaseMs * 2 ** Math.max(0, attempt - 1));
  }

  // ------------------------------------------------------------------ introspection

  /** A snapshot for status displays and tests. */
  snapshot(): { id: string; inc: number; counter: number; phase: Phase; fenced: boolean; tasks: string[]; watched: string[] } {
    return { id: this.id, inc: this.inc, counter: this.counter, phase: this.phase, fenced: this.lease.fenced, tasks: [...this.owned.keys()].sort(), watched: [...this.watched] };
  }

  /** Staleness, in benchmark ticks, of each watched peer as this node judges it now. */
  suspicions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const id of this.watched) out[id] = this.detector.staleness(id);
    return out;
  }

  /** Ids of tasks whose handler is running right now. */
  runningTasks(): string[] {
    return [...this.owned.entries()].filter(([, o]) => o.run && !o.run.aborted).map(([id]) => id).sort();
  }
}


import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { systemClock, type Clock } from './clock.js';
import { resolveConfig, type KeeperConfig, type KeeperOptions } from './config.js';
import { UdpDoorbell, type Doorbell } from './doorbell.js';
import { errorText, silentLogger, type Logger } from './log.js';
import type { NodeContext, Phase, WorkerEvents } from './node/context.js';
import { Drain } from './node/drain.js';
import { Handover } from './node/handover.js';
import { Heartbeat } from './node/heartbeat.js';
import { Holdings } from './node/holdings.js';
import { Join } from './node/join.js';
import { Monitor } from './node/monitor.js';
import { Mover } from './node/mover.js';
import { Moves } from './node/moves.js';
import { Neighbourhood } from './node/neighbourhood.js';
import { Pool } from './node/pool.js';
import { Sweeper } from './node/sweeper.js';
import type { NodeItem, Store, TaskItem } from './store/store.js';
import type { HandlerOptions, TaskHandler } from './tasks.js';

export { NodeIdInUseError } from './node/join.js';
export type { WorkerEvents } from './node/context.js';

/** What a Worker is built from: the protocol settings (KeeperOptions) plus the store and the optional clock, logger, doorbell and randomness. */
export interface WorkerOptions extends Omit<KeeperOptions, 'doorbell'> {
  store: Store;
  /** false: no doorbell (handovers noticed at the next heartbeat); a Doorbell: use that one (the simulator's). Default: UDP. */
  doorbell?: boolean | Doorbell;
  clock?: Clock;
  logger?: Logger;
  /** Source of randomness for jitter and fresh incarnation numbers (seeded in the simulator). */
  random?: () => number;
}

/** The node id a worker takes when none is given: host name, process id and a random suffix. */
export function defaultNodeId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60) || 'node';
  return `${host}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * One node of the cluster. Two loops run on the node's own clock:
 *
 *  - the counter loop (Heartbeat): once per period, the token operation that advances this
 *    node's counter and renews its lease; nothing else ever delays it;
 *  - maintenance, after each heartbeat (maintain(), which reads as the table of contents of
 *    a pass): read the watched peers, judge their staleness against the benchmark, declare
 *    the stale ones dead (compare-and-set; one observer wins) and hand their tasks out, pick
 *    up tasks handed to this node, claim unowned tasks, rebalance, sweep tombstones.
 *
 * Self-fencing: every task stops once the lease (fenceMs from the *send* time of the last
 * successful heartbeat, on this node's monotonic clock) runs out, before any peer could
 * declare this node dead; config validation guarantees the margin.
 *
 * The Worker composes the parts in lib/node/ (docs/architecture.md maps them) and owns only
 * the phase of the node's life and the scheduling of maintenance passes.
 */
export class Worker extends EventEmitter<WorkerEvents> {
  readonly id: string;
  readonly config: KeeperConfig;
  readonly clock: Clock;
  private readonly node: NodeContext;
  private readonly log: Logger;
  private readonly random: () => number;

  private phase: Phase = 'new';
  /** Maintenance passes run so far. */
  private passes = 0;
  private maintaining: Promise<void> | undefined;
  /** A full pass, or a pick-up pass, was asked for while another pass ran. */
  private maintainAgain = false;
  private pickUpAgain = false;

  private readonly heartbeat: Heartbeat;
  private readonly neighbourhood: Neighbourhood;
  private readonly monitor: Monitor;
  private readonly moves: Moves;
  private readonly holdings: Holdings;
  private readonly handover: Handover;
  private readonly mover: Mover;
  private readonly pool: Pool;
  private readonly sweeper: Sweeper;
  private readonly drain: Drain;
  private readonly joining: Join;

  constructor(options: WorkerOptions) {
    super();
    const { store, clock, logger, random, doorbell, ...settings } = options;
    this.config = resolveConfig(typeof doorbell === 'boolean' ? { ...settings, doorbell } : settings);
    this.clock = clock ?? systemClock;
    this.log = logger ?? silentLogger;
    this.random = random ?? Math.random;
    this.id = this.config.nodeId ?? defaultNodeId();
    if (store.requestTimeoutMs !== undefined && store.requestTimeoutMs > this.config.requestTimeoutMs) {
      // runWorker and the CLI give the store the worker's own d; a store made by hand may not.
      this.log.warn('the store lets a request last longer than requestTimeoutMs, which the safety bound assumes no request does; create it with the same requestTimeoutMs', {
        node: this.id,
        storeRequestTimeoutMs: store.requestTimeoutMs,
        requestTimeoutMs: this.config.requestTimeoutMs,
      });
    }
    const bell =
      typeof doorbell === 'object'
        ? doorbell
        : this.config.doorbell
          ? new UdpDoorbell({ port: this.config.doorbellPort, host: this.config.doorbellHost, warn: (message) => this.log.warn(message, { node: this.id }) })
          : undefined;
    const node: NodeContext = {
      id: this.id,
      config: this.config,
      clock: this.clock,
      store,
      log: this.log,
      emit: (event, ...args) => void this.emit(event, ...(args as never)),
      phase: () => this.phase,
      inc: () => this.heartbeat.inc,
      joinedAt: () => this.heartbeat.joined,
      passes: () => this.passes,
      periodic: () => this.passes % this.config.resyncTicks === 0,
      backoffMs: (attempt) => this.backoffMs(attempt),
    };
    this.node = node;
    const leaseValid = () => this.leaseValid();
    const lookAgain = (passes: number) => this.handover.lookAgain(passes);
    this.moves = new Moves(node, { lookAgain, landedWith: (owner, id) => void this.mover.tell(owner, [id]) });
    this.holdings = new Holdings(node, this.moves, { leaseValid });
    this.heartbeat = new Heartbeat(node, {
      taskCount: () => this.holdings.size,
      load: () => this.holdings.load,
      types: () => this.holdings.types(),
      watch: () => this.monitor.records(),
      news: (item) => {
        this.handover.inboxSeen(item.inbox);
        this.neighbourhood.changeSeen(item.neighbours);
        this.drain.seen(item);
      },
      refused: (current) => this.rejoin(current),
      renewed: (unfenced) => this.holdings.resume(unfenced),
      fenced: (sinceRenewalMs) => this.holdings.fence(sinceRenewalMs),
      beat: () => this.kickMaintenance(),
    });
    this.neighbourhood = new Neighbourhood(node, { tombstoneSeen: (tomb) => this.sweeper.tombstoneSeen(tomb) }, this.random);
    this.monitor = new Monitor(node, this.neighbourhood, {
      counter: () => this.heartbeat.counter,
      leaseValid,
      takeOver: (dead, followUp) => this.mover.takeOver(dead, followUp),
    });
    this.handover = new Handover(node, this.holdings, this.moves, bell, {
      pickUpSoon: () => this.kickMaintenance('pick-up'),
      moreWaiting: () => (this.pickUpAgain = true),
    });
    this.mover = new Mover(node, this.neighbourhood, this.holdings, this.moves, bell, { lookAgain, draining: () => this.drain.active });
    this.pool = new Pool(node, this.neighbourhood, this.monitor, this.holdings, this.moves, this.mover, { leaseValid, lookAgain });
    this.sweeper = new Sweeper(node, this.neighbourhood, this.mover);
    this.drain = new Drain(node, this.holdings, this.moves, this.mover);
    this.joining = new Join(node, {
      inc: () => this.heartbeat.inc,
      counter: () => this.heartbeat.counter,
      types: () => this.holdings.types(),
      bell: () => this.handover.bell,
      random: this.random,
      joined: (item, sentAt, confirmedAt) => this.joined(item, sentAt, confirmedAt),
    });
  }

  /** Registers the handler for one task type; only types with a handler are claimed. */
  handle<P = unknown, R = unknown, C = unknown>(type: string, handler: TaskHandler<P, R, C>, options: HandlerOptions = {}): this {
    if (this.phase !== 'new') throw new Error('register handlers before start()');
    this.holdings.register(type, { handler: handler as TaskHandler, mode: options.mode ?? 'long-running', maxAttempts: options.maxAttempts });
    return this;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Joins the cluster and starts both loops. */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error('worker already started');
    this.phase = 'joining';
    await this.handover.open();
    try {
      await this.joining.join(true);
    } catch (error) {
      await this.handover.close();
      throw error;
    }
    if (this.phase !== 'joining') return;
    this.phase = 'running';
    this.heartbeat.start();
    this.handover.startPolling();
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
    // Tell the peers at once, while the handlers stop: nobody places a task on a leaving
    // node, or balances one towards it, only for it to hand that task on again.
    const announced = wasRunning ? this.withinRequestTimeout(this.announceLeaving()) : Promise.resolve();
    await this.maintaining;
    // And read the ring afresh: a node that joined since the last read (a deploy's new one,
    // seconds ago) is told only to its k predecessors, the others find it at their periodic
    // read, and it is the node the tasks should go to.
    const looked = wasRunning ? this.withinRequestTimeout(this.neighbourhood.refresh().catch(() => {})) : Promise.resolve();
    const stops = this.holdings.stopEach('leaving');
    const handedOver = wasRunning ? await this.leave(stops, Promise.all([announced, looked]).then(() => {})) : (await Promise.all(stops.map((s) => s.stopped)), 0);
    this.holdings.clear();
    this.halt();
    this.emit('left', { handedOver, ms: this.clock.now() - startedAt });
    this.log.info('left the cluster', { node: this.id, handedOver });
  }

  /**
   * Hands each task over as soon as its own run has stopped, so that one handler that
   * ignores its signal holds up only its own task. The handlers that stop promptly get
   * handlerStopMs to do so, which keeps a typical leave to one batch of moves. The heartbeat
   * goes on meanwhile; a task still running after leaveTimeoutMs stays with this node, which
   * then stops beating without marking itself gone: failover takes that task once the lease
   * has run out.
   */
  private async leave(stops: Array<{ task: TaskItem; stopped: Promise<void> }>, prepared: Promise<void>): Promise<number> {
    const deadline = this.clock.now() + this.config.leaveTimeoutMs;
    const waiting = new Map(stops.map((s) => [s.task.id, s.task]));
    const stopped = new Set<string>();
    let wake = () => {};
    for (const s of stops) void s.stopped.then(() => (stopped.add(s.task.id), wake()));
    const ready = () => [...stopped].some((id) => waiting.has(id));
    /** Until `done()` holds (checked as each run stops) or `ms` have passed. */
    const until = (done: () => boolean, ms: number) =>
      new Promise<void>((resolve) => {
        if (done()) return resolve();
        const finish = () => {
          timer.cancel();
          wake = () => {};
          resolve();
        };
        const timer = this.clock.setTimer(Math.max(0, ms), finish);
        wake = () => void (done() && finish());
      });
    await until(() => stopped.size === stops.length, this.config.handlerStopMs);
    // The flag lands before this node reads its candidates: of two nodes that leave at once,
    // at least one then sees the other leaving (each wrote before it read), so no pair hands
    // tasks to each other both ways. The ring read afresh, too.
    await prepared;
    let handedOver = 0;
    for (;;) {
      const batch = [...stopped].filter((id) => waiting.has(id)).map((id) => waiting.get(id)!);
      for (const task of batch) waiting.delete(task.id);
      const last = waiting.size === 0 || this.clock.now() >= deadline;
      handedOver += await this.mover.leave(batch, new Set(waiting.keys()), last);
      if (last) break;
      await until(ready, deadline - this.clock.now());
    }
    if (waiting.size > 0) {
      this.log.warn('left with tasks whose handlers ignore their signal; peers take them over once the lease has run out', { node: this.id, tasks: [...waiting.keys()] });
    }
    return handedOver;
  }

  /** Marks this incarnation leaving in its item (Store.markLeaving); a failure is only logged. */
  private announceLeaving(): Promise<void> {
    return this.node.store.markLeaving(this.id, this.heartbeat.inc).then(
      (marked) => void (marked || this.log.warn('could not mark this node leaving: its incarnation is gone', { node: this.id })),
      (error: unknown) => this.log.warn('could not mark this node leaving; peers may still place tasks on it', { node: this.id, error: errorText(error) }),
    );
  }

  /**
   * Resolves when `work` does or after one request timeout, whichever is first: the leaving
   * flag and a fresh ring only steer placements, so a store that does not answer must not
   * hold up a leave, whose moves are compare-and-sets either way.
   */
  private withinRequestTimeout(work: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimer(this.config.requestTimeoutMs, resolve);
      void work.then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  /** Stops both loops and every task without telling anyone: what a crash looks like to peers. */
  async kill(): Promise<void> {
    this.halt();
    await this.holdings.stopAll('killed');
    this.holdings.clear();
  }

  private halt(): void {
    this.phase = 'stopped';
    this.heartbeat.halt();
    void this.handover.close();
  }

  /** A join landed: take up the new incarnation and tell the ring. */
  private async joined(item: NodeItem, sentAt: number, confirmedAt: number): Promise<void> {
    this.heartbeat.begin(item, sentAt, confirmedAt);
    this.monitor.reset(item.watch);
    this.heartbeat.renew(sentAt);
    this.neighbourhood.markChanged();
    this.handover.reset();
    this.drain.seen(item);
    await this.neighbourhood.announce();
    this.emit('joined', { inc: this.heartbeat.inc });
    this.log.info('joined the cluster', { node: this.id, inc: this.heartbeat.inc, counter: this.heartbeat.counter });
  }

  /** Our heartbeat was refused: we were declared dead (or replaced). Stop everything at once, rejoin. */
  private async rejoin(current: NodeItem | undefined): Promise<void> {
    if (this.phase === 'leaving' && current?.state === 'left' && current.inc === this.heartbeat.inc) {
      // Our own leave marked this incarnation gone while a beat was in flight: the leave is
      // ending, nobody declared anything, and there is nothing to rejoin or beat for.
      this.heartbeat.revoke();
      this.heartbeat.pause();
      return;
    }
    this.emit('zombie', { declaredBy: current?.deadBy });
    this.log.warn('this incarnation was declared dead; stopping every task and rejoining', { node: this.id, inc: this.heartbeat.inc, declaredBy: current?.deadBy });
    this.heartbeat.revoke();
    await this.holdings.stopAll('declared dead');
    this.holdings.clear();
    // Pending moves of the old incarnation's tasks race the new incarnation's reclaims, which
    // are conditional writes on the same state: nothing left to settle by hand.
    this.moves.forgetAll();
    this.heartbeat.pause();
    await this.joining.join(false);
    if (this.phase !== 'running') return;
    this.heartbeat.start();
    this.kickMaintenance();
  }

  // ------------------------------------------------------------------ maintenance

  /**
   * Runs maintenance, one pass at a time: 'full' after each heartbeat, 'pick-up' (only take
   * in handed-over tasks) when a ring came or the inbox poll saw a change.
   */
  private kickMaintenance(kind: 'full' | 'pick-up' = 'full'): void {
    if (this.maintaining) {
      if (kind === 'full') this.maintainAgain = true;
      else this.pickUpAgain = true;
      return;
    }
    this.maintaining = (kind === 'full' ? this.maintain() : this.handover.pickUp())
      .catch((error) => this.log.warn('maintenance failed', { node: this.id, error: errorText(error) }))
      .finally(() => {
        this.maintaining = undefined;
        if (this.phase !== 'running') return;
        if (this.maintainAgain) {
          this.maintainAgain = false;
          this.kickMaintenance('full');
        } else if (this.pickUpAgain) {
          this.pickUpAgain = false;
          this.kickMaintenance('pick-up');
        }
      });
  }

  /** One maintenance pass, in the order docs/protocol.md tells it. */
  private async maintain(): Promise<void> {
    this.passes += 1;
    if (this.neighbourhood.refreshDue()) await this.neighbourhood.refresh();
    if (this.phase !== 'running') return;
    const observation = await this.monitor.observe();
    if (!observation) return;
    await this.monitor.declareStale();
    await this.monitor.followUp();
    await this.holdings.resettle();
    await this.handover.catchUp();
    // A draining node takes nothing new and hands its tasks out instead of balancing them.
    const draining = this.drain.active;
    const placed = !draining && this.pool.claimDue(observation.cluster) ? await this.pool.claimUnowned() : 0;
    if (this.drain.due()) await this.drain.handOff();
    // Not in a period that placed new work: claims already go to the least loaded, and
    // moving running tasks meanwhile would only restart them.
    else if (this.config.takeover === 'balanced' && placed === 0) await this.pool.rebalance();
    if (this.sweeper.due()) await this.sweeper.sweep();
  }

  // ------------------------------------------------------------------ introspection

  /** True while the lease is valid on this node's monotonic clock. Synchronous by design. */
  leaseValid(): boolean {
    return this.heartbeat.leaseValid();
  }

  backoffMs(attempt: number): number {
    // Full jitter, doubling per attempt, capped.
    return this.random() * Math.min(this.config.retryMaxMs, this.config.retryBaseMs * 2 ** Math.max(0, attempt - 1));
  }

  /** A snapshot for status displays and tests. */
  snapshot(): { id: string; inc: number; counter: number; phase: Phase; fenced: boolean; draining: boolean; tasks: string[]; watched: string[] } {
    const { heartbeat } = this;
    return {
      id: this.id,
      inc: heartbeat.inc,
      counter: heartbeat.counter,
      phase: this.phase,
      fenced: heartbeat.fenced,
      draining: this.drain.active,
      tasks: this.holdings.ids().sort(),
      watched: [...this.neighbourhood.watched],
    };
  }

  /** Staleness, in benchmark ticks, of each watched peer as this node judges it now. */
  suspicions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const id of this.neighbourhood.watched) out[id] = this.monitor.staleness(id);
    return out;
  }

  /** Ids of tasks whose handler is running right now. */
  runningTasks(): string[] {
    return this.holdings.running();
  }

  /** Ids of held tasks waiting for their start (maxStartsPerSecond), in the order they will start. */
  queuedTasks(): string[] {
    return this.holdings.queued();
  }
}

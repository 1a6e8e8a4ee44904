import { CheckpointError } from '../checkpoint.js';
import { hasLabels } from '../protocol/placement.js';
import { sleep, type Timer } from '../clock.js';
import { errorText } from '../log.js';
import { taskPriority, taskWeight, type TaskHead, type TaskItem, type TaskPatch } from '../store/store.js';
import { TaskRun, type Registration, type RunHost } from '../tasks.js';
import type { NodeContext } from './context.js';
import type { Moves } from './moves.js';

/** A task this node holds, with its run while one is going. */
export interface Held {
  task: TaskItem;
  run?: TaskRun;
  /** The maintenance pass at which this node took the task on. */
  since: number;
}

/** What holding tasks asks of the rest of the node. */
export interface HoldingsHooks {
  /** Whether the lease is valid now (tasks start and record outcomes only then). */
  leaseValid(): boolean;
}

/**
 * The tasks this node holds and the runs of their handlers: the one place that starts and
 * stops user code. Owns the registered handlers and, for each held task, the item as this
 * node last saw it and its run. A task comes in through adopt() only, which checks that the
 * table says it is this incarnation's and that no move of it away is still unsettled.
 *
 * With `maxStartsPerSecond`, held tasks wait in a start queue, highest priority first, and
 * start one per 1/maxStartsPerSecond of this node's clock. Every start, queued or not, goes
 * through the same checks at the moment it happens (held, not running, not on its way out,
 * a running node with a valid lease): a queued task that was dropped, released, moved away
 * or fenced in the meantime does not start.
 */
export class Holdings {
  private readonly handlers = new Map<string, Registration>();
  private readonly owned = new Map<string, Held>();
  /**
   * Held tasks on their way to another node (a drain): each run is stopped before the move
   * and nothing here starts it again (a renewed lease, a reconcile) until the move lands or
   * the task is kept. True once the run is over: only then may the task move.
   */
  private readonly outgoing = new Map<string, boolean>();
  private readonly runHost: RunHost;
  /** Ids of held tasks waiting for their start (maxStartsPerSecond), highest priority first, then in the order queued. */
  private readonly startQueue: string[] = [];
  /** When this node last started a run from the queue (its clock), and the timer set for the next one. */
  private lastQueuedStartAt = Number.NEGATIVE_INFINITY;
  private startTimer: Timer | undefined;

  constructor(
    private readonly node: NodeContext,
    private readonly moves: Moves,
    private readonly hooks: HoldingsHooks,
  ) {
    this.runHost = this.createRunHost();
  }

  register(type: string, registration: Registration): void {
    this.handlers.set(type, registration);
  }

  /** Task types this node has handlers for. */
  types(): string[] {
    return [...this.handlers.keys()];
  }

  handles(type: string): boolean {
    return this.handlers.has(type);
  }

  /** Whether this node may run the task at all: it has a handler for the type and every label the task requires. */
  canRun(task: Pick<TaskHead, 'type' | 'require'>): boolean {
    return this.handlers.has(task.type) && hasLabels(this.node.config.labels, task.require);
  }

  /** How many tasks this node holds. */
  get size(): number {
    return this.owned.size;
  }

  /** The weight of the tasks this node holds (taskWeight): what counts against its capacity. */
  get load(): number {
    let load = 0;
    for (const held of this.owned.values()) load += taskWeight(held.task);
    return load;
  }

  /** Room left for more weight, by capacity. */
  spare(): number {
    return this.node.config.capacity - this.load;
  }

  has(id: string): boolean {
    return this.owned.has(id);
  }

  /** Ids of held tasks, in the order they were taken on. */
  ids(): string[] {
    return [...this.owned.keys()];
  }

  /** Held tasks with the pass each was taken on. */
  held(): Array<Readonly<Held>> {
    return [...this.owned.values()];
  }

  /** Ids of held tasks waiting in the start queue (maxStartsPerSecond), in the order they will start. */
  queued(): string[] {
    return [...this.startQueue];
  }

  /** Ids of tasks whose handler is running right now. */
  running(): string[] {
    return [...this.owned.entries()]
      .filter(([, o]) => o.run && !o.run.aborted)
      .map(([id]) => id)
      .sort();
  }

  /** Whether the table says this incarnation should run the task. */
  isMine(task: TaskItem): boolean {
    return task.owner === this.node.id && task.ownerInc === this.node.inc() && task.state === 'ready';
  }

  adopt(task: TaskItem): void {
    // Also refuses a task moved to an earlier incarnation of this node by a maintenance pass
    // that was still under way when this incarnation was declared dead: its replies can
    // arrive after the rejoin, and that incarnation's tasks are orphans now.
    if (this.node.phase() !== 'running' || !this.isMine(task)) return;
    const pending = this.moves.pending(task.id);
    if (pending && task.token <= pending.token) {
      // An outgoing move of this task may still land: settle before running it again.
      void this.moves.settle(task.id).then((now) => {
        if (now && this.isMine(now) && !this.moves.pending(task.id)) this.adopt(now);
      });
      return;
    }
    const existing = this.owned.get(task.id);
    // Tokens only grow: an item read before the one held is the past, not news.
    if (existing && existing.task.token >= task.token) return;
    // A new token for a task held here (an operator's payload update, or a move away that
    // settled back here): a new holding, not one on its way out. The run under the old token
    // is stopped and stays the entry's run until it is over; only then does the new run
    // start (startRun waits for it), so that even on one node a task never has two runs.
    this.outgoing.delete(task.id);
    const previous = existing?.run;
    this.owned.set(task.id, { task, since: this.node.passes(), ...(previous ? { run: previous } : {}) });
    if (!this.canRun(task)) {
      // Not ours to run (no handler, or a label it requires that this node lacks): put it
      // back for a node that can. Placement never sends such a task here; this is the one
      // door every task comes in by, so a hard constraint holds whatever view sent it.
      void this.release(task.id, task);
      return;
    }
    if (previous && !previous.over) {
      void previous.stop('superseded').then(() => this.startRun(task.id));
      return;
    }
    this.startRun(task.id);
  }

  /** The token of the task as this node holds it (undefined if not held). */
  heldToken(id: string): number | undefined {
    return this.owned.get(id)?.task.token;
  }

  /** Takes back the tasks whose unknown move away has settled here. */
  async resettle(): Promise<void> {
    for (const id of [...this.moves.pendingIds()]) {
      const now = await this.moves.settle(id);
      if (now && this.isMine(now) && !this.moves.pending(id)) this.adopt(now);
    }
  }

  /** After a failed or ambiguous move of one of our tasks: re-read it and take it back if still ours. */
  async takeBack(id: string): Promise<void> {
    const task = await this.node.store.getTask(id).catch(() => undefined);
    if (task && this.isMine(task)) this.adopt(task);
  }

  /** Operator's force-release (or no handler here): stop the task, then put it back in the pool for others. */
  async release(id: string, task: TaskHead): Promise<void> {
    await this.drop(id, 'released');
    let failed = false;
    const after = await this.moves.move(task, { owner: null, ownerInc: 0 }).catch(() => ((failed = true), undefined));
    if (after) await this.node.store.bumpCluster('tasks').catch(() => {});
    // Refused: if the table still says the task is this node's (the release was asked on an
    // older view of it), it must not stay unrun. A store error is left to the next reconcile.
    else if (!failed) await this.takeBack(id);
  }

  /** Stops a task's run (waiting for the handler to return) and forgets the task. */
  async drop(id: string, reason: string): Promise<void> {
    const entry = this.owned.get(id);
    this.owned.delete(id);
    this.outgoing.delete(id);
    this.unqueue(id);
    await entry?.run?.stop(reason);
  }

  /**
   * Stops a task's run ahead of a move away, keeping the task held, so that a reconcile does
   * not take it in again and a renewed lease does not restart it: a task moves only once its
   * run is over, and then runs nowhere but at its new owner. Resolves when the run is over.
   */
  stopForMove(id: string, reason: string): Promise<void> {
    const entry = this.owned.get(id);
    if (!entry) return Promise.resolve();
    this.outgoing.set(id, false);
    this.unqueue(id);
    return (entry.run?.stop(reason) ?? Promise.resolve()).then(() => {
      if (this.outgoing.has(id)) this.outgoing.set(id, true);
    });
  }

  /** Whether a task is on its way out (stopForMove). */
  isOutgoing(id: string): boolean {
    return this.outgoing.has(id);
  }

  /** Tasks on their way out whose runs are over: ready to move. */
  stoppedForMove(): TaskItem[] {
    const ready: TaskItem[] = [];
    for (const [id, stopped] of this.outgoing) {
      const entry = this.owned.get(id);
      if (!entry) this.outgoing.delete(id); // finished as it stopped (a finite task's outcome)
      else if (stopped) ready.push(entry.task);
    }
    return ready;
  }

  /** A task that was on its way out stays: run it here again. */
  keep(id: string): void {
    if (!this.outgoing.delete(id)) return;
    this.startRun(id);
  }

  /** Stops every run (waiting for the handlers to return), and every start still queued; the tasks stay held. */
  async stopAll(reason: string): Promise<void> {
    this.clearStartQueue();
    const runs = [...this.owned.values()].map((o) => o.run).filter((r): r is TaskRun => r !== undefined);
    await Promise.all(runs.map((r) => r.stop(reason)));
  }

  /**
   * Signals every run to stop, without waiting: each held task with the moment its own run is
   * over (at once for a task that was not running).
   */
  stopEach(reason: string): Array<{ task: TaskItem; stopped: Promise<void> }> {
    this.clearStartQueue();
    return [...this.owned.values()].map((o) => ({ task: o.task, stopped: o.run ? o.run.stop(reason) : Promise.resolve() }));
  }

  /** Forgets every held task (their runs stopped already). */
  clear(): void {
    this.owned.clear();
    this.outgoing.clear();
    this.clearStartQueue();
  }

  /**
   * The lease was renewed: start every task held that is not running, the ones stopped by
   * fencing and any that arrived while the lease was out (startRun refuses to start those).
   */
  resume(unfenced: boolean): void {
    if (unfenced) {
      this.node.emit('unfenced', { tasks: this.owned.size });
      this.node.log.info('lease renewed; resuming tasks', { node: this.node.id, tasks: this.owned.size });
    }
    for (const id of this.owned.keys()) this.startRun(id);
  }

  /** The lease ran out: stop every task before any peer may take them. */
  fence(sinceRenewalMs: number): void {
    const { node } = this;
    if (node.phase() === 'stopped') return;
    node.emit('fenced', { sinceRenewalMs, tasks: this.owned.size });
    node.log.warn('lease expired; stopping all tasks until a heartbeat succeeds', { node: node.id, sinceRenewalMs: Math.round(sinceRenewalMs) });
    void this.stopAll('fenced');
  }

  /** Starts a held task's run now, or (maxStartsPerSecond) queues its start. */
  private startRun(id: string): void {
    if (!this.startable(id)) return;
    if (!(this.node.config.maxStartsPerSecond > 0)) {
      this.startNow(id);
      return;
    }
    if (this.startQueue.includes(id)) return;
    // After the last queued task of at least its priority: higher priorities first, then in
    // the order queued.
    const priority = taskPriority(this.owned.get(id)!.task);
    const at = this.startQueue.findIndex((queued) => taskPriority(this.owned.get(queued)?.task ?? {}) < priority);
    this.startQueue.splice(at < 0 ? this.startQueue.length : at, 0, id);
    // Started from a timer, even when a start is due now: the tasks adopted together (one
    // batch read of a takeover's or a reconcile's tasks, a resume) are all queued first, so
    // the highest priority of them starts first.
    if (!this.startTimer) this.startTimer = this.node.clock.setTimer(0, () => this.startQueuedNow());
  }

  private startQueuedNow(): void {
    this.startTimer = undefined;
    this.startQueued();
  }

  /** Whether a held task may start a run now; checked again at the moment a queued start happens. */
  private startable(id: string): boolean {
    const entry = this.owned.get(id);
    const registration = entry && this.handlers.get(entry.task.type);
    // A run that is still writing its outcome is not over: a second run would do the work again.
    if (!entry || !registration || (entry.run && (!entry.run.aborted || entry.run.recording))) return false;
    // A run under an older token (see adopt) must be over first: its handler may not have returned yet.
    if (entry.run && entry.run.token !== entry.task.token && !entry.run.over) return false;
    if (this.outgoing.has(id)) return false;
    // Only a running node with a valid lease starts tasks: not while fenced, and not while
    // leaving (the heartbeats that go on during a leave renew the lease).
    return this.node.phase() === 'running' && this.hooks.leaseValid();
  }

  private startNow(id: string): boolean {
    if (!this.startable(id)) return false;
    const entry = this.owned.get(id)!;
    entry.run = new TaskRun(entry.task, this.handlers.get(entry.task.type)!, this.runHost);
    this.node.emit('task-started', { task: id, token: entry.task.token });
    return true;
  }

  /**
   * Starts queued tasks, one per 1/maxStartsPerSecond of this node's clock since the last
   * queued start, and sets a timer for the next. A queued task that may no longer start is
   * skipped without using up a start; one that was fenced is queued again by resume().
   */
  private startQueued(): void {
    if (this.startTimer) return;
    const gapMs = 1000 / this.node.config.maxStartsPerSecond;
    while (this.startQueue.length > 0) {
      const now = this.node.clock.now();
      const waitMs = this.lastQueuedStartAt + gapMs - now;
      if (waitMs > 0) {
        this.startTimer = this.node.clock.setTimer(waitMs, () => this.startQueuedNow());
        return;
      }
      if (this.startNow(this.startQueue.shift()!)) this.lastQueuedStartAt = now;
    }
  }

  private unqueue(id: string): void {
    const at = this.startQueue.indexOf(id);
    if (at >= 0) this.startQueue.splice(at, 1);
  }

  private clearStartQueue(): void {
    this.startQueue.length = 0;
    this.startTimer?.cancel();
    this.startTimer = undefined;
  }

  /** What a TaskRun may do: check the lease and record outcomes while the task is still ours. */
  private createRunHost(): RunHost {
    const { node } = this;
    return {
      nodeId: node.id,
      clock: node.clock,
      maxAttempts: node.config.maxAttempts,
      leaseValid: () => this.hooks.leaseValid(),
      backoffMs: (attempt) => node.backoffMs(attempt),
      recordFailure: async (task, error, maxAttempts) => {
        const attempts = task.attempts + 1;
        const failed = attempts >= maxAttempts;
        node.log.warn(failed ? 'task failed for good' : 'task handler threw; will retry', { node: node.id, task: task.id, attempts, error: errorText(error) });
        const patch = failed ? { attempts, state: 'failed' as const, error: errorText(error) } : { attempts, error: errorText(error) };
        const ok = await this.record(task, patch);
        if (!ok) return 'lost';
        const entry = this.owned.get(task.id);
        if (entry && !failed) entry.task = { ...entry.task, attempts };
        return failed ? 'failed' : 'retry';
      },
      recordDone: (task, result) => this.record(task, { state: 'done', result: result ?? null }),
      saveCheckpoint: (task, json) => this.saveCheckpoint(task, json),
      ended: (run, outcome) => {
        const entry = this.owned.get(run.taskId);
        // A run under an older token that ends (refused, or its outcome lost to the new token)
        // leaves the holding of the new token alone.
        if (outcome !== 'stopped' && entry?.run === run && entry.task.token === run.token) {
          this.owned.delete(run.taskId);
          this.unqueue(run.taskId);
        }
        node.emit('task-ended', { task: run.taskId, outcome });
      },
      onError: (message, error) => node.log.error(message, { node: node.id, error: errorText(error) }),
    };
  }

  /**
   * Writes a run's checkpoint while the task is still this node's. The write sets one
   * attribute under a condition on the ownership alone, so sending it again after a store
   * error is harmless whether or not the lost attempt landed: the retry either finds the
   * task still ours and stores the same text, or is refused because the task moved on, and
   * then it is no longer ours either way.
   */
  private async saveCheckpoint(task: TaskItem, json: string): Promise<boolean> {
    const { node } = this;
    for (let attempt = 1; ; attempt++) {
      try {
        const saved = await node.store.updateTask(task.id, task, { checkpoint: json });
        // A run started later (after fencing, say) starts from this checkpoint too.
        const entry = this.owned.get(task.id);
        if (saved && entry && entry.task.token === task.token) entry.task = { ...entry.task, checkpoint: JSON.parse(json) as unknown };
        return saved;
      } catch (error) {
        if (attempt >= checkpointAttempts || node.phase() === 'stopped') {
          throw new CheckpointError('unconfirmed', `task ${task.id}: could not confirm the checkpoint (${errorText(error)}); it may or may not be stored`, { cause: error });
        }
        node.log.warn('could not store a checkpoint; retrying', { node: node.id, task: task.id, attempt, error: errorText(error) });
        await sleep(node.clock, node.backoffMs(attempt));
      }
    }
  }

  /**
   * Writes a run's outcome on the task while it is still this node's (owner, incarnation and
   * token unchanged). Only a refused condition means the task is no longer ours: a store
   * error is retried, for as long as the lease holds and a few times after, because a
   * finite task whose outcome is not written stays ready and ours, and would run again.
   * After a write whose outcome is unknown, the item says whether it landed.
   */
  private async record(task: TaskItem, patch: TaskPatch): Promise<boolean> {
    const { node } = this;
    let afterLease = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        return await node.store.updateTask(task.id, task, patch);
      } catch (error) {
        node.log.warn('could not record a task outcome; retrying', { node: node.id, task: task.id, attempt, error: errorText(error) });
      }
      const now = await node.store.getTask(task.id).catch(() => undefined);
      if (now) {
        const ours = now.token === task.token && now.owner === task.owner && now.ownerInc === task.ownerInc;
        if (now.token === task.token && landed(now, patch)) return true;
        if (!ours || now.state !== 'ready') return false;
      }
      if (!this.hooks.leaseValid()) afterLease += 1;
      if (node.phase() === 'stopped' || afterLease > 3) return false;
      await sleep(node.clock, node.backoffMs(attempt));
    }
  }
}

/** Store calls one checkpoint makes at most before it is reported unconfirmed (each call retries on its own too). */
const checkpointAttempts = 4;

/** Whether an item already carries a patch (a write whose reply was lost landed after all). */
function landed(task: TaskItem, patch: TaskPatch): boolean {
  if (patch.state !== undefined && task.state !== patch.state) return false;
  return patch.attempts === undefined || task.attempts === patch.attempts;
}

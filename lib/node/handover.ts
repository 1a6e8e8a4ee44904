import type { Timer } from '../clock.js';
import type { Doorbell, Ring } from '../doorbell.js';
import { taskWeight, type TaskItem } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Holdings } from './holdings.js';
import type { Moves } from './moves.js';

/** Rings kept waiting for the next maintenance pass; more are dropped (the inbox still tells). */
const maxWaitingRings = 64;
/** Task ids read for rings in one maintenance pass. */
const maxRungTasks = 1000;
/** Inbox values checked one by one against the rings; a larger jump means a reconcile anyway. */
const maxToldSpan = 1024;

/** What the receiving side of a handover asks of the rest of the node. */
export interface HandoverHooks {
  /** Run a pass that only picks up handed-over tasks (now, or after the pass under way). */
  pickUpSoon(): void;
  /** Rings are still waiting after this pass: pick up again once it is over. */
  moreWaiting(): void;
}

/**
 * The receiving side of a handover: tasks other nodes moved to this one. A mover bumps this
 * node's inbox counter (seen with every heartbeat, or by the inbox poll) and rings its
 * doorbell with the tasks. Rings are answered with one consistent read of the tasks they
 * name; an inbox change that no ring explained is answered by reconciling this node's tasks
 * with the owner index. Owns the inbox values seen and acted on, the waiting rings, the
 * reconciles still owed, and the doorbell's address.
 */
export class Handover {
  /** This incarnation's doorbell address, published in its node item. */
  private bellAddress: string | undefined;
  /** The newest inbox value seen (heartbeat reply, inbox poll or ring) and the one acted on. */
  private latestInbox: number | undefined;
  private processedInbox = -1;
  /** Rings waiting to be answered, and the inbox values whose handovers rings told in full. */
  private rings: Ring[] = [];
  private readonly toldInboxes = new Set<number>();
  /** Passes that must still reconcile: a handover may not show in the owner index at once. */
  private reconcilesOwed = 0;
  private inboxTimer: Timer | undefined;

  constructor(
    private readonly node: NodeContext,
    private readonly holdings: Holdings,
    private readonly moves: Moves,
    private readonly doorbell: Doorbell | undefined,
    private readonly hooks: HandoverHooks,
  ) {}

  get bell(): string | undefined {
    return this.bellAddress;
  }

  /** Opens the doorbell (before joining: its address goes into the node item). */
  async open(): Promise<void> {
    this.bellAddress = await this.doorbell?.open((ring) => this.onRing(ring));
  }

  /** Stops the inbox poll and closes the doorbell. */
  async close(): Promise<void> {
    this.inboxTimer?.cancel();
    await this.doorbell?.close();
  }

  /** A new incarnation: every inbox value it sees is news. */
  reset(): void {
    this.processedInbox = -1;
    this.toldInboxes.clear();
  }

  /** This node's inbox as its heartbeat reply showed it. */
  inboxSeen(value: number): void {
    this.latestInbox = value;
  }

  /** Reconcile at the next `passes` passes: something moved to this node may have landed unseen. */
  lookAgain(passes: number): void {
    this.reconcilesOwed = Math.max(this.reconcilesOwed, passes);
  }

  /**
   * With `inboxPollMs`, a cheap read of this node's inbox between heartbeats, so tasks handed
   * over by a leaving node or a detector start within that interval instead of at the next
   * period (half a read unit per poll: eventually consistent, one small attribute).
   */
  startPolling(): void {
    const { node } = this;
    const every = node.config.inboxPollMs;
    if (!every) return;
    this.inboxTimer = node.clock.setTimer(every, () => {
      if (node.phase() !== 'running') return;
      void node.store
        .peekInbox(node.id)
        .then((inbox) => {
          // Only a value newer than any seen is news: the poll reads eventually consistently
          // (and its reply may come after a heartbeat's), so an older value is the past, and
          // taking it would send the node to reconcile for nothing.
          if (inbox !== undefined && inbox > Math.max(this.processedInbox, this.latestInbox ?? -1)) {
            this.latestInbox = inbox;
            this.hooks.pickUpSoon();
          }
        })
        .catch(() => {})
        .finally(() => this.startPolling());
    });
  }

  /** The pass between heartbeats: take in what rings told of, reconcile if the inbox moved unexplained. */
  async pickUp(): Promise<void> {
    await this.answerRings();
    if (!this.inboxNeedsReconcile()) return;
    // Once more at the next period: the owner index may lag behind the handover.
    this.reconcilesOwed = Math.max(this.reconcilesOwed, 1);
    await this.reconcile();
  }

  /** The full pass's part: the same, plus the reconciles owed and the periodic one. */
  async catchUp(): Promise<void> {
    await this.answerRings();
    // Twice: indexes are eventually consistent, and a handover may not be visible at once.
    if (this.inboxNeedsReconcile()) this.reconcilesOwed = 2;
    if (this.reconcilesOwed > 0 || this.node.periodic()) {
      this.reconcilesOwed = Math.max(0, this.reconcilesOwed - 1);
      await this.reconcile();
    }
  }

  /** A peer handed tasks to this node and rang: pick them up now, not at the next heartbeat. */
  private onRing(ring: Ring): void {
    if (ring.node !== this.node.id || this.node.phase() !== 'running') return;
    // Bounded: under a flood, the inbox (read with every heartbeat) still tells of everything.
    if (this.rings.length >= maxWaitingRings) return;
    this.rings.push(ring);
    this.hooks.pickUpSoon();
  }

  /**
   * Reads the tasks the waiting rings name, with one consistent batch read, and takes in
   * those the table says are ours. A ring without task ids makes its inbox value news, for
   * a reconcile. The indexes are not involved, so this needs no second look for index lag.
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
    if (this.rings.length > 0) this.hooks.moreWaiting();
    const ids = [...new Set(rings.flatMap((r) => r.tasks ?? []))];
    const now = await this.takeInFromTable(ids).catch(() => undefined);
    if (!now) return; // the heartbeat's inbox still tells of them
    // A ring counts as told only if every task it names is this incarnation's now. Anything
    // else is left to a reconcile: a move whose outcome the mover did not know may still land,
    // and tasks handed to an earlier incarnation of this node are reclaimed there.
    const ours = (id: string) => {
      const task = now.get(id);
      return task !== undefined && this.holdings.isMine(task);
    };
    for (const ring of rings) {
      if (ring.tasks?.every(ours)) this.toldInboxes.add(ring.inbox);
      else if (ring.inbox > (this.latestInbox ?? -1)) this.latestInbox = ring.inbox;
    }
  }

  /**
   * Whether the inbox moved on in a way only a reconcile can answer, marking it seen. Each
   * notification bumps the inbox by one; when rings told of every value since the last one
   * acted on (with their tasks), those tasks are already taken in and nothing is left to find.
   */
  private inboxNeedsReconcile(): boolean {
    const latest = this.latestInbox;
    if (latest === undefined || latest === this.processedInbox) return false;
    const from = this.processedInbox;
    this.processedInbox = latest;
    let told = from >= 0 && latest - from <= maxToldSpan;
    for (let value = from + 1; told && value <= latest; value++) told = this.toldInboxes.has(value);
    for (const value of this.toldInboxes) if (value <= latest) this.toldInboxes.delete(value);
    return !told;
  }

  /**
   * Reconciles this node's view of its tasks with the table: adopts tasks handed to it,
   * reclaims tasks of its own earlier incarnations, stops tasks that are no longer its own.
   */
  private async reconcile(): Promise<void> {
    const { node, holdings } = this;
    const listed = await node.store.tasksOwnedBy(node.id);
    const seen = new Set<string>();
    const unknown: string[] = [];
    const changed: string[] = [];
    for (const task of listed) {
      if (task.ownerInc === node.inc()) {
        seen.add(task.id);
        const held = holdings.heldToken(task.id);
        if (held === undefined) unknown.push(task.id);
        // A release asked for, or a token past the one this node runs (an operator's payload
        // update): the run must stop, and for an update start again with the new payload.
        else if (task.releaseRequested || task.token > held) changed.push(task.id);
      } else if (task.ownerInc < node.inc()) {
        // Left behind by an earlier incarnation of this node, which has stopped for good.
        const after = await this.moves.move(task, { owner: node.id, ownerInc: node.inc() }).catch(() => undefined);
        if (after) {
          seen.add(task.id);
          holdings.adopt(after);
        }
      }
    }
    // The index holds no payloads: the tasks this node does not run yet come from the table,
    // which also says whether each is still ours and ready. So do release requests: the index
    // may still show one that a move has cleared since, and releasing on it would stop a task
    // this node must run. And so do newer tokens: only the table's item carries the new payload.
    await this.takeInFromTable([...unknown, ...changed]);
    // The index may lag; confirm with a consistent read before stopping anything.
    for (const id of holdings.ids()) {
      if (seen.has(id)) continue;
      const task = await node.store.getTask(id);
      if (task && holdings.isMine(task)) {
        if (task.releaseRequested) await holdings.release(id, task);
        continue;
      }
      // Not ours any more: the run is signalled, and the pass does not wait for its handler
      // (one that ignores its signal must not end this node's watch over its peers).
      void holdings.drop(id, 'revoked');
    }
  }

  /**
   * Reads tasks with one consistent batch read and takes in those the table says are this
   * incarnation's (a ring's tasks, or listed ones this node does not run yet). Returns what it read.
   */
  private async takeInFromTable(ids: readonly string[]): Promise<Map<string, TaskItem>> {
    const now = ids.length > 0 ? await this.node.store.getTasks(ids) : new Map<string, TaskItem>();
    for (const id of ids) {
      const task = now.get(id);
      if (task && this.holdings.isMine(task) && this.node.phase() === 'running') await this.takeIn(task);
    }
    return now;
  }

  /**
   * A task of this incarnation, as the table lists it: run it, unless it must go back. Of one
   * held already, only a newer token is news (an operator's payload update): adopting it
   * restarts the task with the table's item.
   */
  private async takeIn(task: TaskItem): Promise<void> {
    const { holdings } = this;
    const held = holdings.heldToken(task.id);
    if (task.releaseRequested) await holdings.release(task.id, task);
    else if (held !== undefined) {
      if (task.token > held) holdings.adopt(task);
    }
    // Handed over on load figures that were a period old: never run past capacity,
    // give the excess back to the pool instead.
    else if (taskWeight(task) > holdings.spare()) await holdings.release(task.id, task);
    else holdings.adopt(task);
  }
}

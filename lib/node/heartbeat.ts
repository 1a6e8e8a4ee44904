import type { Timer } from '../clock.js';
import { errorText } from '../log.js';
import { Lease } from '../protocol/lease.js';
import type { NodeItem, WatchRecord } from '../store/store.js';
import type { NodeContext } from './context.js';

/** What the heartbeat reports to, and asks of, the rest of the node. */
export interface HeartbeatHooks {
  /** Tasks this node holds, their weight and the types it runs: published with every beat. */
  taskCount(): number;
  load(): number;
  types(): string[];
  /** The detector's sightings, published so that fresh observers need not wait a full window. */
  watch(): Record<string, WatchRecord>;
  /** A beat's reply: this node's item as it stands after the beat (inbox and neighbour counters). */
  news(node: NodeItem): void;
  /** The beat was refused: this incarnation was declared dead or replaced. */
  refused(current: NodeItem | undefined): Promise<void>;
  /** The lease was renewed in time (`unfenced`: that ended a fence). */
  renewed(unfenced: boolean): void;
  /** The lease ran out. */
  fenced(sinceRenewalMs: number): void;
  /** A beat is over while the node runs: time for a maintenance pass. */
  beat(): void;
}

/**
 * The counter loop: once per period, the one write that advances this node's counter and
 * renews its lease, and nothing else ever delays it. Owns the incarnation the node runs as,
 * its counter, the beat timer and the lease.
 */
export class Heartbeat {
  private incarnation = 0;
  private joinedAt = '';
  private counterValue = 0;
  /** Send time of the first attempt to write `counter + 1`, while no attempt has succeeded. */
  private firstAttemptAt: number | undefined;
  private readonly lease: Lease;
  private nextBeatAt = 0;
  /** When the armed timer is due: how late it fires says how long the event loop was blocked. */
  private timerDueAt = 0;
  private joinSentAt = Number.NEGATIVE_INFINITY;
  private joinConfirmedAt = Number.NEGATIVE_INFINITY;
  private beatTimer: Timer | undefined;

  constructor(
    private readonly node: NodeContext,
    private readonly hooks: HeartbeatHooks,
  ) {
    this.lease = new Lease(node.clock, node.config.fenceMs, (since) => hooks.fenced(since));
  }

  /** This incarnation's join time, as published in its item. */
  get joined(): string {
    return this.joinedAt;
  }

  get inc(): number {
    return this.incarnation;
  }

  get counter(): number {
    return this.counterValue;
  }

  get fenced(): boolean {
    return this.lease.fenced;
  }

  /** A join sent at `sentAt` landed (known at `confirmedAt`): beat as that incarnation from its counter on (the lease is renewed separately). */
  begin(item: NodeItem, sentAt: number, confirmedAt: number): void {
    this.incarnation = item.inc;
    this.counterValue = item.counter;
    this.firstAttemptAt = undefined;
    this.joinedAt = item.joinedAt;
    this.joinSentAt = sentAt;
    this.joinConfirmedAt = confirmedAt;
  }

  /**
   * Beats one period after the join write was sent, or at once if a slow start (announcing,
   * a cold table) took longer: the lease runs from the join write and must not run out. Not
   * sooner: the join write advanced the counter, and observers count every increment as a
   * period of this node's clock (a rejoin that beat at once would count a period that never
   * passed: the model check's LOOSE_BOUND counterexample, docs/model.md). Nor sooner than
   * P - d after the join was confirmed, as after any value (see beat()): an attempt of the
   * join may have landed at any moment before that.
   */
  start(): void {
    const { periodMs, requestTimeoutMs } = this.node.config;
    this.nextBeatAt = Math.max(this.node.clock.now(), this.joinSentAt + periodMs, this.joinConfirmedAt + periodMs - requestTimeoutMs);
    this.schedule();
  }

  /** Stops the beat timer (a rejoin starts it again). */
  pause(): void {
    this.beatTimer?.cancel();
  }

  /** Stops beating for good and drops the lease timer. */
  halt(): void {
    this.beatTimer?.cancel();
    this.lease.cancel();
  }

  /** Declared dead: the lease is void at once, whatever time it had left. */
  revoke(): void {
    this.lease.revoke();
  }

  /** True while the lease is valid on this node's monotonic clock. Synchronous by design. */
  leaseValid(): boolean {
    return this.node.phase() !== 'stopped' && this.lease.valid();
  }

  /** A write sent at `sentAt` proved this incarnation alive: renew the lease from then. */
  renew(sentAt: number): void {
    const outcome = this.lease.renew(sentAt);
    if (outcome === 'late') return;
    this.hooks.renewed(outcome === 'unfenced');
  }

  /**
   * Arms the next beat; after a failed one (`retrySoon`), a retry of the same value a quarter
   * period later if the next beat is further away: one throttled or lost write must not cost
   * the lease, which the next beat alone could renew only from the failed attempt's send.
   */
  private schedule(retrySoon = false): void {
    const now = this.node.clock.now();
    const retryAt = retrySoon ? now + this.node.config.periodMs / 4 : Number.POSITIVE_INFINITY;
    const retry = retryAt < this.nextBeatAt;
    this.timerDueAt = Math.max(now, Math.min(retryAt, this.nextBeatAt));
    this.beatTimer = this.node.clock.setTimer(this.timerDueAt - now, () => void this.beat(retry));
  }

  /**
   * A timer that fires later than a request may last means the event loop was blocked (task
   * code busy on the CPU, a long GC, a frozen process): reads and writes in flight meanwhile
   * timed out although they may have been answered, and the store tried them again. Short
   * stalls cost nothing more; one longer than the fence window's slack (F - P) fences the
   * node. Said aloud so that the cause is found in the task code, not in DynamoDB.
   */
  private noticeStall(lateMs: number): void {
    const { node } = this;
    if (lateMs <= node.config.requestTimeoutMs) return;
    node.emit('stalled', { ms: Math.round(lateMs) });
    node.log.warn('event loop blocked longer than a request may last; move CPU-bound task code off the main thread', {
      node: node.id,
      blockedMs: Math.round(lateMs),
      requestTimeoutMs: node.config.requestTimeoutMs,
    });
  }

  /** The task count, with the load only when it differs (NodeItem.load): all tasks of weight 1 beat as before weights. */
  private loadFigures(): { taskCount: number; load?: number } {
    const taskCount = this.hooks.taskCount();
    const load = this.hooks.load();
    return load === taskCount ? { taskCount } : { taskCount, load };
  }

  private async beat(retry = false): Promise<void> {
    const { node, hooks } = this;
    if (node.phase() !== 'running' && node.phase() !== 'leaving') return;
    const sentAt = node.clock.now();
    this.noticeStall(sentAt - this.timerDueAt);
    if (!retry) {
      this.nextBeatAt += node.config.periodMs;
      // After a pause, skip the missed beats instead of firing them all at once.
      if (this.nextBeatAt < sentAt) this.nextBeatAt = sentAt + node.config.periodMs;
    }
    // The counter counts heartbeats that landed, never periods in which this node could not
    // reach the table: an observer's own outage must not become evidence against others
    // (after a store outage every counter would otherwise jump by the outage's length). A
    // failed attempt is repeated with the same value. It may have landed, and peers may have
    // seen the value since then: so the lease counts from the first attempt of a value, never
    // from a retry (renewing from the retry would let the lease outlive a peer's judgement).
    const next = this.counterValue + 1;
    this.firstAttemptAt ??= sentAt;
    try {
      const result = await node.store.heartbeat({
        id: node.id,
        inc: this.incarnation,
        joinedAt: this.joinedAt,
        counter: next,
        ...this.loadFigures(),
        capacity: node.config.capacity,
        types: hooks.types(),
        watch: hooks.watch(),
      });
      if (node.phase() !== 'running' && node.phase() !== 'leaving') return;
      if (!result.ok) {
        await hooks.refused(result.current);
        return;
      }
      const receivedAt = node.clock.now();
      const renewFrom = this.firstAttemptAt;
      this.counterValue = next;
      this.firstAttemptAt = undefined;
      // The next value goes a full period after the send that landed this one, retry or not:
      // observers count this node's increments as periods of its clock (docs/protocol.md).
      // And no sooner than P - d after this reply: the store may have sent the value more than
      // once (an attempt whose reply was lost), and this reply may have come late (a blocked
      // event loop, a slow network; the store uses a heartbeat's late reply): whichever
      // attempt landed first did so before now, maybe long after `sentAt`. Counted from its
      // landing, the next value is still a period later, less the d that the bound allows
      // for a value in flight.
      this.nextBeatAt = Math.max(this.nextBeatAt, sentAt + node.config.periodMs, receivedAt + node.config.periodMs - node.config.requestTimeoutMs);
      this.renew(renewFrom);
      if (result.node) hooks.news(result.node);
    } catch (error) {
      node.emit('heartbeat-failed', { error: errorText(error) });
      node.log.warn('heartbeat failed', { node: node.id, error: errorText(error) });
      this.lease.check();
      if (node.phase() === 'running' || node.phase() === 'leaving') this.schedule(true);
      // A retry is not a period: maintenance runs once per beat.
      if (node.phase() === 'running' && !retry) hooks.beat();
      return;
    }
    if (node.phase() === 'running' || node.phase() === 'leaving') this.schedule();
    if (node.phase() === 'running' && !retry) hooks.beat();
  }
}

import type { Clock, Timer } from '../clock.js';

/**
 * A node's lease on its tasks, kept on its own monotonic clock: valid for `fenceMs` from the
 * *send* time of the last heartbeat that succeeded. A value first seen by a peer was written
 * after it was sent, so counting from the send time never lets the lease outlive what peers
 * may assume (see config.ts for the bound).
 *
 * When the lease runs out the node fences itself (`onExpire`: stop every task). The check is
 * made both by a timer and synchronously by `valid()`, because a timer cannot fire while the
 * process is frozen, and task code that wakes up must see at once that its lease is gone.
 */
export class Lease {
  private sentAt = Number.NEGATIVE_INFINITY;
  private expired = false;
  private timer: Timer | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly fenceMs: number,
    private readonly onExpire: (sinceRenewalMs: number) => void,
  ) {}

  /** Synchronous: renewed within the window, and not fenced since. */
  valid(): boolean {
    return !this.expired && this.clock.now() - this.sentAt < this.fenceMs;
  }

  /** Whether the node has fenced itself and not been renewed since. */
  get fenced(): boolean {
    return this.expired;
  }

  /**
   * A heartbeat sent at `sentAt` succeeded. Returns 'unfenced' if that ended a fence: the
   * heartbeat's condition proves nobody declared this node dead meanwhile, so its tasks are
   * still its own. Returns 'late' if the reply came after the lease had run out anyway.
   */
  renew(sentAt: number): 'renewed' | 'unfenced' | 'late' {
    if (sentAt > this.sentAt) this.sentAt = sentAt;
    this.arm();
    if (this.clock.now() - this.sentAt >= this.fenceMs) return 'late';
    if (!this.expired) return 'renewed';
    this.expired = false;
    return 'unfenced';
  }

  /** Fences at once if the lease has run out (also called when a heartbeat fails). */
  check(): void {
    if (this.expired) return;
    const since = this.clock.now() - this.sentAt;
    if (since < this.fenceMs) {
      // Timers may fire a little early: look again when the lease really runs out (at least
      // a millisecond later, so that rounding can never make this spin).
      this.arm(1);
      return;
    }
    this.expired = true;
    this.onExpire(since);
  }

  /** Ends the lease without a fence (declared dead, stopped): invalid until the next renew. */
  revoke(): void {
    this.sentAt = Number.NEGATIVE_INFINITY;
    this.expired = false;
    this.cancel();
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private arm(atLeastMs = 0): void {
    this.cancel();
    this.timer = this.clock.setTimer(Math.max(atLeastMs, this.sentAt + this.fenceMs - this.clock.now()), () => this.check());
  }
}

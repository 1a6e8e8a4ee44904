import { systemClock, type Clock, type Timer } from '../../lib/clock.js';

/**
 * The real clock, except that while paused no timer fires: what SIGSTOP does to a process's
 * event loop, in-process. Time keeps running, so code that wakes up after resume() sees
 * how long it was frozen.
 */
export class PausableClock implements Clock {
  private paused = false;
  private held: Array<() => void> = [];

  now(): number {
    return systemClock.now();
  }

  setTimer(ms: number, fn: () => void): Timer {
    let cancelled = false;
    const inner = systemClock.setTimer(ms, () => {
      if (cancelled) return;
      if (this.paused) this.held.push(() => !cancelled && fn());
      else fn();
    });
    return {
      cancel: () => {
        cancelled = true;
        inner.cancel();
      },
    };
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const held = this.held;
    this.held = [];
    for (const fn of held) fn();
  }
}

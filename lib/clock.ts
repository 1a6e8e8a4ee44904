/**
 * Time is a dependency. Every piece of coordination logic reads time and sets timers
 * through a Clock, so tests, the simulator and the fault harness can skew it, pause it
 * or replace it with virtual time.
 *
 * The protocol never compares one machine's clock with another's: a Clock is only ever
 * used to measure intervals on the node that owns it (periods, the self-fencing window).
 * That is why `now()` is monotonic and has no defined origin.
 */
export interface Clock {
  /** Milliseconds on this node's monotonic clock; only differences are meaningful. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds of this clock. */
  setTimer(ms: number, fn: () => void): Timer;
}

/** A timer set on a Clock, which can be cancelled. */
export interface Timer {
  cancel(): void;
}

/** Resolves after `ms` of the given clock, or rejects early when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves once every promise has, or after `ms` on `clock`, whichever is first: a bounded wait on user code. */
export function settledWithin(clock: Clock, promises: ReadonlyArray<Promise<unknown>>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimer(ms, resolve);
    void Promise.all(promises).then(() => {
      timer.cancel();
      resolve();
    });
  });
}

/** The process's real monotonic clock (performance.now()). */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const handle = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
};

/**
 * A clock that runs at `rate` times real speed and starts at `offsetMs`. Used by the fault
 * harness (`--clock-rate`, `--clock-offset-ms`) to give a worker a wrong and drifting clock:
 * the protocol must tolerate any offset, and any rate within the configured drift bound.
 */
export function skewedClock(base: Clock, rate: number, offsetMs: number): Clock {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`clock rate must be a positive number, got ${rate}`);
  const origin = base.now();
  return {
    now: () => offsetMs + (base.now() - origin) * rate,
    setTimer: (ms, fn) => base.setTimer(ms / rate, fn),
  };
}

import { describe, expect, it } from 'vitest';
import { ConfigError, earliestDeclarationMs, failoverBoundMs, latestSelfStopMs, minimumStaleTicks, resolveConfig } from '../lib/config.js';

describe('config: validated once, at the door', () => {
  it('fills in defaults and derives a fence window inside the safe range', () => {
    const c = resolveConfig();
    expect(c).toMatchObject({ periodMs: 1000, staleTicks: 4, driftBound: 1.05, requestTimeoutMs: 200, handlerStopMs: 100, capacity: 1000, watchPeers: 3, takeover: 'balanced' });
    // Safety: the node stops before anyone may declare it dead ...
    expect(latestSelfStopMs(c)).toBeLessThan(earliestDeclarationMs(c));
    // ... and one slow heartbeat does not fence it.
    expect(c.fenceMs).toBeGreaterThan(c.periodMs + c.requestTimeoutMs * c.driftBound);
  });

  it('needs staleTicks >= 3 at 5% drift and >= 9 when clocks may run 2x fast or slow', () => {
    const base = { periodMs: 1000, requestTimeoutMs: 200, handlerStopMs: 100 };
    expect(minimumStaleTicks({ ...base, driftBound: 1.05 })).toBe(3);
    expect(minimumStaleTicks({ ...base, driftBound: 2 })).toBe(9);
    expect(() => resolveConfig({ driftBound: 2, staleTicks: 8 })).toThrow(/staleTicks 8 is too small for driftBound 2 .* use staleTicks >= 9/);
    expect(resolveConfig({ driftBound: 2, staleTicks: 9 }).fenceMs).toBeGreaterThan(1400);
  });

  it('counts one read window against the declaration: a witness\'s heartbeat in flight and the spread of one batch read', () => {
    const c = resolveConfig();
    // (K - 1) * P / f, less 2 * d * f.
    expect(earliestDeclarationMs(c)).toBeCloseTo((3 * 1000) / 1.05 - 2 * 200 * 1.05, 6);
    expect(c.fenceMs).toBe(1717.9);
    // A fence window that was safe without the read window is refused now.
    expect(() => resolveConfig({ fenceMs: 2300 })).toThrow(/fenceMs \(2300\) is unsafe/);
  });

  it.each([
    [{ periodMs: 0 }, /periodMs must be > 0/],
    [{ periodMs: -5 }, /periodMs must be > 0/],
    [{ staleTicks: 1 }, /staleTicks must be at least 2/],
    [{ staleTicks: 2.5 }, /staleTicks must be a whole number/],
    [{ driftBound: 0.9 }, /driftBound must be >= 1/],
    [{ fenceMs: 1100 }, /fenceMs \(1100\) must exceed periodMs \+ requestTimeoutMs x driftBound \(1210\)/],
    [{ fenceMs: 2700 }, /fenceMs \(2700\) is unsafe: .* peers may declare it dead after 2437.1 ms/],
    [{ requestTimeoutMs: 1000 }, /requestTimeoutMs \(1000\) must be shorter than periodMs/],
    [{ capacity: -1 }, /capacity must be >= 0/],
    [{ takeover: 'random' }, /takeover must be one of: balanced, detector/],
    [{ nodeId: 'has space' }, /node id must be/],
    [{ appVersion: '1.0 beta' }, /appVersion must be 1-256 visible ASCII characters/],
    [{ appVersion: '' }, /appVersion must be 1-256 visible ASCII characters/],
    [{ appVersion: 'v'.repeat(257) }, /appVersion must be 1-256 visible ASCII characters/],
    [{ perodMs: 100 }, /unknown setting "perodMs"/],
  ])('refuses %j with a message that says why', (options, message) => {
    expect(() => resolveConfig(options as never)).toThrow(ConfigError);
    expect(() => resolveConfig(options as never)).toThrow(message);
  });

  it('states the failover bound as a formula of the settings', () => {
    const c = resolveConfig({ periodMs: 1000 });
    // d + (K + 3) * P * f, plus a round trip per 100 tasks in batch moves and per 32 tasks redone singly
    expect(failoverBoundMs(c)).toBeCloseTo(200 + 7 * 1000 * 1.05);
    expect(failoverBoundMs(c, 1)).toBeCloseTo(200 + 7 * 1000 * 1.05 + 2 * 200);
    expect(failoverBoundMs(c, 1000)).toBeCloseTo(200 + 7 * 1000 * 1.05 + 10 * 200 + 32 * 200);
    // An owner index that lags: the declarer's next look that comes after the lag.
    expect(failoverBoundMs(c, 0, 500)).toBeCloseTo(200 + 7 * 1000 * 1.05 + 2 * 1000 * 1.05);
    expect(failoverBoundMs(c, 0, 3000)).toBeCloseTo(200 + 7 * 1000 * 1.05 + 6 * 1000 * 1.05);
    expect(failoverBoundMs(c, 0, 10_000)).toBe(Number.POSITIVE_INFINITY);
    // A write-unit budget for moves: up to 3 units per task (a batch redone task by task)
    // beyond the first second's worth.
    const paced = resolveConfig({ periodMs: 1000, moveWriteUnitsPerSecond: 500 });
    expect(failoverBoundMs(paced, 1000) - failoverBoundMs(c, 1000)).toBeCloseTo(5 * 1000 * 1.05);
    expect(failoverBoundMs(paced, 150)).toBeCloseTo(failoverBoundMs(c, 150)); // within the burst
  });

  it('adds the start rate\'s wait to the failover bound: the tasks one receiver can get, one per 1/rate of a slow clock', () => {
    const c = resolveConfig({ periodMs: 1000 });
    const limited = resolveConfig({ periodMs: 1000, maxStartsPerSecond: 50, capacity: 200 });
    expect(c.maxStartsPerSecond).toBe(0);
    expect(failoverBoundMs(limited, 0)).toBeCloseTo(failoverBoundMs(c, 0));
    expect(failoverBoundMs(limited, 100) - failoverBoundMs(c, 100)).toBeCloseTo((100 / 50) * 1000 * 1.05);
    // No receiver holds more than its capacity, so no more than that many wait in its queue.
    expect(failoverBoundMs(limited, 1000) - failoverBoundMs(c, 1000)).toBeCloseTo((200 / 50) * 1000 * 1.05);
  });

  it('refuses a negative or non-numeric start rate in one line', () => {
    expect(() => resolveConfig({ maxStartsPerSecond: -1 })).toThrow('maxStartsPerSecond must be >= 0 (0: no limit)');
    expect(() => resolveConfig({ maxStartsPerSecond: Number.NaN })).toThrow(/maxStartsPerSecond/);
  });

  it('refuses a negative move budget in one line', () => {
    expect(() => resolveConfig({ moveWriteUnitsPerSecond: -1 })).toThrow('moveWriteUnitsPerSecond must be >= 0 (0: no limit)');
  });
});

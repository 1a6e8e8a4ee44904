import { describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../lib/clock.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import { StoreUnavailableError, type Store } from '../lib/store/store.js';
import { Lease } from '../lib/protocol/lease.js';
import { Worker } from '../lib/worker.js';
import { Ledger, waitFor } from './support/cluster.js';
import { SimClock, VirtualTime } from './support/sim.js';

/**
 * The lease on one node: how it runs out and how it is renewed, with the in-memory store
 * answering late on purpose (a unit of the counter loop, not of DynamoDB).
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A clock moved by hand; timers fire when it passes them. */
function manualClock() {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  return {
    now: () => now,
    setTimer(ms: number, fn: () => void) {
      const timer = { at: now + Math.max(0, ms), fn, live: true };
      timers.push(timer);
      return { cancel: () => (timer.live = false) };
    },
    advance(ms: number) {
      now += ms;
      for (const timer of timers.filter((t) => t.live && t.at <= now)) {
        timer.live = false;
        timer.fn();
      }
    },
  };
}

describe('Lease', () => {
  it('runs from the send time of the renewing heartbeat, not from when its reply arrived', () => {
    const clock = manualClock();
    const expired: number[] = [];
    const lease = new Lease(clock, 1000, (since) => expired.push(since));
    expect(lease.valid()).toBe(false);
    clock.advance(100);
    const sentAt = clock.now();
    clock.advance(400); // the reply takes 400 ms
    expect(lease.renew(sentAt)).toBe('renewed');
    clock.advance(599);
    expect(lease.valid()).toBe(true);
    clock.advance(1);
    expect(lease.valid()).toBe(false); // 1000 ms after the send, though only 600 after the reply
    expect(expired).toEqual([1000]);
    expect(lease.fenced).toBe(true);
  });

  it('ends a fence on the next successful renewal, and ignores a renewal whose lease already ran out', () => {
    const clock = manualClock();
    const lease = new Lease(clock, 1000, () => {});
    lease.renew(clock.now());
    clock.advance(1500);
    expect(lease.fenced).toBe(true);
    expect(lease.renew(clock.now() - 1200)).toBe('late');
    expect(lease.fenced).toBe(true);
    expect(lease.renew(clock.now())).toBe('unfenced');
    expect(lease.valid()).toBe(true);
  });

  it('is invalid at once when revoked (declared dead), without fencing', () => {
    const clock = manualClock();
    const expired: number[] = [];
    const lease = new Lease(clock, 1000, (since) => expired.push(since));
    lease.renew(clock.now());
    lease.revoke();
    expect(lease.valid()).toBe(false);
    clock.advance(5000);
    expect(expired).toEqual([]);
  });
});

describe('lease on a worker', () => {
  it('finding 2 (docs/chaos-findings.md): a fence timer that fires early still fences, and tasks that arrive meanwhile start after renewal', async () => {
    // Timers that fire 1 ms early, as Node's sometimes do relative to performance.now().
    const early: Clock = { now: () => systemClock.now(), setTimer: (ms, fn) => systemClock.setTimer(Math.max(0, ms - 1), fn) };
    const memory = new MemoryStore();
    let lateReplyMs = 0;
    // Writes land at once; their replies arrive late.
    const store = new Proxy(memory, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (key !== 'heartbeat' && key !== 'moveTask') return (value as (...a: unknown[]) => unknown).bind(target);
        return async (...args: unknown[]) => {
          const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (lateReplyMs) await sleep(key === 'heartbeat' ? lateReplyMs : lateReplyMs / 2);
          return out;
        };
      },
    }) as Store;
    const worker = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'a', periodMs: 500, store, clock: early }).handle('demo', (ctx) => new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve())));
    let fenced = 0;
    worker.on('fenced', () => (fenced += 1));
    await memory.createTask({ id: 'first', type: 'demo', payload: null }, 'now');
    await worker.start();
    await waitFor('first task running', () => worker.runningTasks().includes('first'));

    // Heartbeat replies now take 700 ms: longer than F - P, shorter than F. The lease runs out
    // shortly before each renewal arrives.
    lateReplyMs = 700;
    let expiredUnfenced = 0;
    for (let i = 0; i < 60; i++) {
      if (i % 8 === 0) {
        await memory.createTask({ id: `t${i / 8}`, type: 'demo', payload: null }, 'now');
        await memory.bumpCluster('tasks');
      }
      await sleep(50);
      if (!worker.leaseValid() && !worker.snapshot().fenced) expiredUnfenced += 1;
    }
    lateReplyMs = 0;
    expect(fenced).toBeGreaterThan(0);
    // Between the lease running out and the (re-armed) fence timer there is at most a
    // millisecond or two; sampling every 50 ms should practically never land in it.
    expect(expiredUnfenced).toBeLessThanOrEqual(1);
    await waitFor('every owned task running', () => {
      const owned = worker.snapshot().tasks;
      return owned.length === 9 && owned.every((id) => worker.runningTasks().includes(id));
    });
    await worker.kill();
  }, 30_000);

  it('finding 4: a node whose lease is renewed during its graceful leave does not start the tasks it hands over', async () => {
    const memory = new MemoryStore();
    const failing = new Set<string>();
    let slowMovesMs = 0;
    const storeFor = (node: string): Store =>
      new Proxy(memory, {
        get(target, key, receiver) {
          const value = Reflect.get(target, key, receiver) as unknown;
          if (typeof value !== 'function') return value;
          if (key === 'heartbeat') {
            return async (...args: unknown[]) => {
              if (failing.has(node)) throw new StoreUnavailableError('heartbeat failed: injected');
              return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            };
          }
          // Moves land at once and answer late (a batch move as a whole, a single one slower for t5).
          if (key === 'moveTask' || key === 'moveTasks') {
            return async (...args: unknown[]) => {
              const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
              if (slowMovesMs) await sleep(args[0] === 't5' ? slowMovesMs * 3 : slowMovesMs);
              return out;
            };
          }
          return (value as (...a: unknown[]) => unknown).bind(target);
        },
      }) as Store;
    const ledger = new Ledger();
    for (let i = 0; i < 6; i++) await memory.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'now');
    const a = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'a', periodMs: 200, store: storeFor('a') }).handle('demo', ledger.handler('a'));
    await a.start();
    await waitFor('a runs all six', () => a.runningTasks().length === 6);
    const b = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'b', periodMs: 200, store: storeFor('b'), maxMovesPerTick: 0, resyncTicks: 1 }).handle('demo', ledger.handler('b'));
    await b.start();
    const restarted: string[] = [];
    failing.add('a');
    await new Promise<void>((resolve) => a.once('fenced', () => resolve()));
    a.on('task-started', ({ task }) => restarted.push(task));
    slowMovesMs = 800; // the handover takes a while ...
    const left = a.stop();
    await sleep(100);
    failing.delete('a'); // ... and a's heartbeat succeeds in the middle of it
    await left;
    await waitFor('b runs all six', () => b.runningTasks().length === 6);
    expect(restarted).toEqual([]);
    ledger.expectSafe();
    await b.kill();
  }, 30_000);
});

describe('the counter loop', () => {
  it('sends the next value no sooner than P - d after a reply that came late (an earlier attempt may have landed long before)', async () => {
    const time = new VirtualTime();
    const clock = new SimClock(time);
    const memory = new MemoryStore();
    const periodMs = 1000;
    const requestTimeoutMs = 200;
    const sent = new Map<number, number>();
    const replied = new Map<number, number>();
    // The write lands at once; its reply comes 3 d later, as after two attempts whose replies
    // were lost (DynamoStore tries a heartbeat up to three times within one call).
    const store = new Proxy(memory, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (key !== 'heartbeat') return (value as (...a: unknown[]) => unknown).bind(target);
        return async (input: { counter: number }) => {
          sent.set(input.counter, time.now);
          const out = await memory.heartbeat(input as never);
          if (input.counter === 4) await new Promise<void>((resolve) => clock.setTimer(3 * requestTimeoutMs, resolve));
          replied.set(input.counter, time.now);
          return out;
        };
      },
    }) as Store;
    const worker = new Worker({ nodeId: 'a', periodMs, requestTimeoutMs, store, clock, doorbell: false });
    const started = worker.start();
    await time.run(10);
    await started;
    await time.run(8000);
    expect(replied.get(4)! - sent.get(4)!).toBe(3 * requestTimeoutMs);
    // Counted from the reply (the latest the value can have landed), not from the first send.
    expect(sent.get(5)! - replied.get(4)!).toBeGreaterThanOrEqual(periodMs - requestTimeoutMs);
    // Values that came back in time keep their rhythm of one period.
    expect(sent.get(7)! - sent.get(6)!).toBe(periodMs);
    await worker.kill();
  });

  it('sends the first beat no sooner than P - d after a join whose reply came late (the join moved the counter too)', async () => {
    const time = new VirtualTime();
    const clock = new SimClock(time);
    const memory = new MemoryStore();
    const periodMs = 1000;
    const requestTimeoutMs = 200;
    let joinReplied = 0;
    const beats: number[] = [];
    const store = new Proxy(memory, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        const fn = (value as (...a: unknown[]) => Promise<unknown>).bind(target);
        if (key === 'joinNode') {
          return async (...args: unknown[]) => {
            const out = await fn(...args);
            await new Promise<void>((resolve) => clock.setTimer(3 * requestTimeoutMs, resolve));
            joinReplied = time.now;
            return out;
          };
        }
        if (key === 'heartbeat') return (...args: unknown[]) => (beats.push(time.now), fn(...args));
        return fn;
      },
    }) as Store;
    const worker = new Worker({ nodeId: 'a', periodMs, requestTimeoutMs, store, clock, doorbell: false });
    let started = false;
    void worker.start().then(() => (started = true));
    for (let t = 100; !started && t <= 5000; t += 100) await time.run(t);
    await time.run(8000);
    expect(joinReplied).toBeGreaterThan(0);
    expect(beats[0]! - joinReplied).toBeGreaterThanOrEqual(periodMs - requestTimeoutMs);
    await worker.kill();
  });
});

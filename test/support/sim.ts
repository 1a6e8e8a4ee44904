import type { Clock, Timer } from '../../lib/clock.js';
import type { Doorbell, Ring } from '../../lib/doorbell.js';
import { AmbiguousWriteError, StoreUnavailableError, type Store } from '../../lib/store/store.js';

/**
 * Virtual time for the deterministic simulator: a priority queue of timers. `run` pops the
 * earliest timer, runs it, and lets every promise continuation it caused settle (one
 * macrotask turn) before the next, so a seeded schedule always unfolds the same way.
 */
export class VirtualTime {
  now = 0;
  private seq = 0;
  private heap: Array<{ at: number; seq: number; fn: () => void; live: boolean }> = [];

  schedule(at: number, fn: () => void): Timer {
    const entry = { at: Math.max(at, this.now), seq: this.seq++, fn, live: true };
    this.push(entry);
    return { cancel: () => (entry.live = false) };
  }

  /** Runs timers up to `until`; `afterEach` runs after every step (the invariant checks). */
  async run(until: number, afterEach?: () => void): Promise<void> {
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > until) break;
      this.pop();
      if (!top.live) continue;
      this.now = top.at;
      top.fn();
      await new Promise<void>((resolve) => setImmediate(resolve));
      afterEach?.();
    }
    this.now = Math.max(this.now, until);
  }

  private push(entry: (typeof this.heap)[number]): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (less(h[parent]!, h[i]!)) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

function less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * One simulated process's clock: its own rate and offset over virtual time. While the
 * process is paused (SIGSTOP) none of its timers fire; they fire after it resumes. Once it
 * is killed, none fire ever again.
 */
export class SimClock implements Clock {
  pausedUntil = Number.NEGATIVE_INFINITY;
  killed = false;

  constructor(
    private readonly time: VirtualTime,
    readonly rate = 1,
    readonly offset = 0,
  ) {}

  now(): number {
    return this.offset + this.time.now * this.rate;
  }

  get paused(): boolean {
    return this.time.now < this.pausedUntil;
  }

  setTimer(ms: number, fn: () => void): Timer {
    let inner: Timer;
    const fire = () => {
      if (this.killed) return;
      if (this.time.now < this.pausedUntil) {
        inner = this.time.schedule(this.pausedUntil, fire);
        return;
      }
      fn();
    };
    inner = this.time.schedule(this.time.now + Math.max(0, ms) / this.rate, fire);
    return { cancel: () => inner.cancel() };
  }
}

/** Seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface NetworkConditions {
  /** One-way latency in virtual ms, drawn per message. */
  latency: () => number;
  /** While true, requests from this node never arrive and fail after the timeout. */
  partitioned: () => boolean;
  /** Probability that a write is applied but its reply is lost (the caller sees a timeout). */
  lostReply: () => number;
  random: () => number;
  timeoutMs: number;
  /** Serves each call the way Amazon DynamoDB would (sim-cloud.ts), once it has reached the store. */
  cloud?: {
    serve(store: Store, operation: string, args: unknown[], call: () => Promise<unknown>, pause: (ms: number) => Promise<void>): Promise<unknown>;
  };
}

const writes = new Set(['joinNode', 'heartbeat', 'declareDead', 'markLeaving', 'markLeft', 'removeNode', 'notify', 'bumpCluster', 'createTask', 'deleteTask', 'moveTask', 'moveTasks', 'updateTask', 'requestRelease', 'updatePayload']);

/**
 * A node's view of the shared store through a simulated network: requests travel in virtual
 * time, are applied to the one shared MemoryStore, and replies travel back on the node's own
 * clock (so a paused node handles them only after it resumes). Partitions drop requests;
 * lost replies make a write that was applied look like a timeout, and so does a reply that
 * arrives after the timeout on the node's clock (DynamoStore's LateReplyError).
 */
export function networkStore(shared: Store, time: VirtualTime, clock: SimClock, net: NetworkConditions): Store {
  const travel = (ms: number, onClock: Clock | VirtualTime) =>
    new Promise<void>((resolve) => {
      if (onClock instanceof VirtualTime) onClock.schedule(onClock.now + ms, resolve);
      else onClock.setTimer(ms * (clock.rate ?? 1), resolve);
    });
  return new Proxy(shared, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver);
      if (typeof original !== 'function') return original;
      return async (...args: unknown[]) => {
        const sentAt = time.now;
        const sentOnClock = clock.now();
        if (net.partitioned()) {
          await travel(net.timeoutMs, time);
          throw new StoreUnavailableError(`${String(prop)}: request timed out (partition)`);
        }
        await travel(net.latency(), time);
        if (net.partitioned()) {
          await travel(Math.max(0, net.timeoutMs - (time.now - sentAt)), time);
          throw new StoreUnavailableError(`${String(prop)}: request timed out (partition)`);
        }
        const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        const result = net.cloud ? await net.cloud.serve(target, String(prop), args, call, (ms) => travel(ms, time)) : await call();
        if (writes.has(String(prop)) && net.random() < net.lostReply()) {
          await travel(Math.max(0, net.timeoutMs - (time.now - sentAt)), time);
          throw new AmbiguousWriteError(`${String(prop)}: reply lost`);
        }
        await travel(net.latency(), clock);
        // DynamoStore measures each reply on arrival, on the node's clock: one that came after
        // the timeout (a slow network, or a node paused while it travelled) is not used, but
        // for a heartbeat's, whose next value is spaced from the reply however late.
        if (clock.now() - sentOnClock > net.timeoutMs && prop !== 'heartbeat') {
          if (writes.has(String(prop))) throw new AmbiguousWriteError(`${String(prop)}: reply after the timeout`);
          throw new StoreUnavailableError(`${String(prop)}: reply after the timeout`);
        }
        return result;
      };
    },
  });
}

export interface BellConditions {
  /** One-way latency in virtual ms, drawn per ring. */
  latency: () => number;
  /** Probability that a ring is lost, and that it arrives twice. */
  lost: number;
  duplicated: number;
  random: () => number;
}

/**
 * Doorbells over the simulated network, addressed by node id, so that a ring that is late
 * enough reaches a later process with the same id. Rings are lost, duplicated and delayed;
 * none leave or reach a partitioned or dead process, and a paused one hears them after it
 * resumes.
 */
export class SimDoorbells {
  private readonly listeners = new Map<string, { onRing: (ring: Ring) => void; clock: SimClock; cut: () => boolean }>();

  constructor(
    private readonly time: VirtualTime,
    private readonly net: BellConditions,
  ) {}

  /** The doorbell of one process: `cut` is true while it is partitioned. */
  for(id: string, clock: SimClock, cut: () => boolean): Doorbell {
    const address = `sim:${id}`;
    const listeners = this.listeners;
    let own: { onRing: (ring: Ring) => void; clock: SimClock; cut: () => boolean } | undefined;
    return {
      open: async (onRing) => {
        own = { onRing, clock, cut };
        listeners.set(address, own);
        return address;
      },
      ring: (to, ring) => {
        if (cut() || clock.killed || this.net.random() < this.net.lost) return;
        const copies = this.net.random() < this.net.duplicated ? 2 : 1;
        for (let i = 0; i < copies; i++) {
          this.time.schedule(this.time.now + this.net.latency(), () => {
            const target = listeners.get(to);
            if (!target || target.cut() || target.clock.killed) return;
            // Copies, as a datagram would be: the receiver must not share the sender's arrays.
            target.clock.setTimer(0, () => target.onRing(structuredClone(ring)));
          });
        }
      },
      close: async () => {
        if (listeners.get(address) === own) listeners.delete(address);
      },
    };
  }
}

/** JSON with Maps and Sets spelled out and object keys in a fixed order: equal values, equal text. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Map) return { map: [...v.entries()] };
    if (v instanceof Set) return { set: [...v] };
    if (v instanceof Error) return { error: v.name, message: v.message };
    if (v && typeof v === 'object' && !Array.isArray(v)) return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    return v;
  }) ?? 'undefined';
}

/**
 * A store that reports each call and its outcome. It hands the caller the very promise the
 * store returned, so recording adds no turn to the caller's continuations and cannot change
 * the order in which a schedule unfolds.
 */
export function recorded(store: Store, record: (line: string) => void): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const original = Reflect.get(target, prop, receiver);
      if (typeof original !== 'function') return original;
      return (...args: unknown[]) => {
        const call = `${String(prop)}(${canonical(args).slice(1, -1)})`;
        record(`call ${call}`);
        const reply = (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        reply.then(
          (result) => record(`reply ${call} -> ${canonical(result)}`),
          (error: unknown) => record(`fail ${call} -> ${canonical(error)}`),
        );
        return reply;
      };
    },
  });
}

/** A doorbell that reports each ring it sends. */
export function recordedBell(bell: Doorbell, record: (line: string) => void): Doorbell {
  return {
    open: (onRing) => bell.open(onRing),
    ring: (to, ring) => {
      record(`ring ${to} ${canonical(ring)}`);
      bell.ring(to, ring);
    },
    close: () => bell.close(),
  };
}

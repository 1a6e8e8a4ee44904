import { join } from 'node:path';
import type { Stamped } from '../fault-log.js';
import type { Interval } from './time-axis.js';

/**
 * The harness's fault log read into the processes it ran and the faults it injected into
 * each, the store's outages and restarts, and the proxies' counts.
 */

/** One worker process, from its `spawn` record to its end, with the faults aimed at it. */
export interface Instance {
  readonly name: string;
  readonly slot: string;
  readonly node: string;
  readonly spawn: number;
  readonly joined: number | undefined;
  readonly end: number | undefined;
  readonly endKind: string | undefined;
  readonly rate: number;
  readonly offsetMs: number;
  readonly auditPath: string;
  readonly stderrPath: string;
  readonly pauses: readonly Interval[];
  /** Short SIGSTOPs (a blocked event loop): never a reason to declare the node dead. */
  readonly stalls: readonly Interval[];
  readonly partitions: readonly Interval[];
  readonly kill: number | undefined;
  readonly term: number | undefined;
  readonly exitUnexpected: number | undefined;
  readonly exitCode: number | null | undefined;
  readonly exitSignal: string | null | undefined;
  readonly exitAt: number | undefined;
  /** When its own log says it held no valid lease: from "lease expired" or a refused heartbeat, until it renewed or rejoined. */
  readonly fenced: readonly Interval[];
  /** The part of `fenced` that began with "lease expired" (it could not renew), not with being declared dead. */
  readonly leaseLost: readonly Interval[];
}

/** The same, while the loader is still filling it in. */
export type InstanceBeingRead = { -readonly [K in keyof Instance]: Instance[K] extends readonly Interval[] ? Interval[] : Instance[K] };

/** A fault that takes a node out (SIGKILL, SIGSTOP, partition) or makes it leave (SIGTERM), when it began. */
export interface Failure {
  readonly kind: 'kill' | 'pause' | 'partition' | 'term' | 'stubborn-term';
  readonly instance: string;
  readonly at: number;
}

/** A fault as the timeline shows it, in the order the fault log completes it (a pause at its resume). */
export type FaultSpan =
  | { readonly kind: 'clock'; readonly instance: string; readonly slot: string; readonly at: number; readonly rate: number; readonly offsetMs: number }
  | { readonly kind: 'kill' | 'term'; readonly instance: string; readonly slot: string; readonly at: number }
  | { readonly kind: 'pause' | 'stall' | 'partition'; readonly instance: string; readonly slot: string; readonly from: number; readonly to: number }
  | { readonly kind: 'net'; readonly instance: string; readonly slot: string | undefined; readonly from: number; readonly to: number }
  | { readonly kind: 'outage'; readonly from: number; readonly to: number };

/** The harness's fault log: the processes it ran, the faults it injected into each, the store's record. */
export function readFaultLog(dir: string, records: readonly Stamped[], rel: (mono: string) => number) {
  const instances = new Map<string, InstanceBeingRead>();
  const outages: Interval[] = [];
  const spans: FaultSpan[] = [];
  const counts: Record<string, number> = { kill: 0, pause: 0, stall: 0, partition: 0, clock: 0, outage: 0, net: 0, term: 0, 'stubborn-term': 0 };
  const openPause = new Map<string, number>();
  const openStall = new Map<string, number>();
  const openPartition = new Map<string, number>();
  const openNet = new Map<number, { at: number; instances: string[] }>();
  let openOutage: number | undefined;
  let skipped = 0;
  const store = { restartsMs: [] as number[], dataBytes: 0, slow: [] as Interval[] };
  const proxies = { requests: 0, blackholed: 0, throttled: 0, errors500: 0, droppedReplies: 0 };
  const failures: Failure[] = [];

  /** Ends a fault that lasts (a pause at its resume): on the instance, and on the timeline. */
  const closeSpan = (open: Map<string, number>, kind: 'pause' | 'stall' | 'partition', instance: string, t: number, list: (i: InstanceBeingRead) => Interval[]) => {
    const a = open.get(instance)!;
    open.delete(instance);
    const i = instances.get(instance)!;
    list(i).push({ a, b: t });
    spans.push({ kind, instance, slot: i.slot, from: a, to: t });
  };

  for (const r of records) {
    const t = rel(r.mono_ns);
    switch (r.type) {
      case 'spawn': {
        instances.set(r.instance, {
          name: r.instance,
          slot: r.slot,
          node: r.node,
          spawn: t,
          joined: undefined,
          end: undefined,
          endKind: undefined,
          rate: r.clockRate,
          offsetMs: r.clockOffsetMs,
          auditPath: join(dir, r.audit),
          stderrPath: join(dir, r.stderr),
          pauses: [],
          stalls: [],
          partitions: [],
          kill: undefined,
          term: undefined,
          exitUnexpected: undefined,
          exitCode: undefined,
          exitSignal: undefined,
          exitAt: undefined,
          fenced: [],
          leaseLost: [],
        });
        if (r.clockRate !== 1 || r.clockOffsetMs !== 0) {
          counts['clock']! += 1;
          spans.push({ kind: 'clock', instance: r.instance, slot: r.slot, at: t, rate: r.clockRate, offsetMs: r.clockOffsetMs });
        }
        break;
      }
      case 'joined': {
        const i = instances.get(r.instance);
        if (i) i.joined = t;
        break;
      }
      case 'kill':
      case 'term': {
        const i = instances.get(r.instance)!;
        if (r.type === 'kill') i.kill = t;
        else i.term = t;
        i.end ??= t;
        // A stubborn term is a term to every rule (the process leaves), but its own kind to the takeover rule and the counts.
        const kind = r.type === 'term' && r.stubborn ? 'stubborn-term' : r.type;
        i.endKind ??= kind;
        counts[kind]! += 1;
        failures.push({ kind, instance: r.instance, at: t });
        spans.push({ kind: r.type, instance: r.instance, slot: i.slot, at: t });
        break;
      }
      case 'pause':
        openPause.set(r.instance, t);
        counts['pause']! += 1;
        failures.push({ kind: 'pause', instance: r.instance, at: t });
        break;
      case 'resume':
        closeSpan(openPause, 'pause', r.instance, t, (i) => i.pauses);
        break;
      // Not a failure: a stall must cost the node nothing, and no takeover is owed.
      case 'stall':
        openStall.set(r.instance, t);
        counts['stall']! += 1;
        break;
      case 'unstall':
        closeSpan(openStall, 'stall', r.instance, t, (i) => i.stalls);
        break;
      case 'partition':
        openPartition.set(r.instance, t);
        counts['partition']! += 1;
        failures.push({ kind: 'partition', instance: r.instance, at: t });
        break;
      case 'heal':
        closeSpan(openPartition, 'partition', r.instance, t, (i) => i.partitions);
        break;
      case 'net-start':
        openNet.set(r.fault, { at: t, instances: r.instances });
        counts['net']! += 1;
        break;
      case 'net-end': {
        const n = openNet.get(r.fault);
        openNet.delete(r.fault);
        if (n) for (const name of n.instances) spans.push({ kind: 'net', instance: name, slot: instances.get(name)?.slot, from: n.at, to: t });
        break;
      }
      case 'outage-start':
        openOutage = t;
        counts['outage']! += 1;
        break;
      case 'outage-end':
        if (openOutage !== undefined) {
          outages.push({ a: openOutage, b: t });
          spans.push({ kind: 'outage', from: openOutage, to: t });
        }
        openOutage = undefined;
        break;
      case 'exit': {
        const i = instances.get(r.instance)!;
        i.exitCode = r.code;
        i.exitSignal = r.signal;
        i.exitAt = t;
        if (!r.expected) {
          i.exitUnexpected = t;
          i.end ??= t;
          i.endKind ??= 'exit';
        }
        break;
      }
      case 'store-slow':
        store.slow.push({ a: rel(r.from_ns), b: rel(r.to_ns) });
        break;
      case 'store':
        store.restartsMs.push(r.restartMs);
        store.dataBytes = Math.max(store.dataBytes, r.dataBytes);
        break;
      case 'skip':
        skipped += 1;
        break;
      case 'proxy-stats':
        proxies.requests += r.requests;
        proxies.blackholed += r.blackholed;
        proxies.throttled += r.throttled;
        proxies.errors500 += r.errors500;
        proxies.droppedReplies += r.droppedReplies;
        break;
      default:
        break;
    }
  }
  // Faults still open at the end of the log (the run ended or was interrupted).
  for (const [name, a] of openPause) instances.get(name)!.pauses.push({ a, b: Number.POSITIVE_INFINITY });
  for (const [name, a] of openStall) instances.get(name)!.stalls.push({ a, b: Number.POSITIVE_INFINITY });
  for (const [name, a] of openPartition) instances.get(name)!.partitions.push({ a, b: Number.POSITIVE_INFINITY });
  if (openOutage !== undefined) outages.push({ a: openOutage, b: Number.POSITIVE_INFINITY });
  return { instances, outages, spans, counts, skipped, store, proxies, failures };
}

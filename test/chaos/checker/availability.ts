import type { InstanceBeingRead } from './faults.js';
import { measureOutside, union, type Interval } from './time-axis.js';

/**
 * When the cluster could act: the store up and at least one live worker, i.e. one that
 * runs, is neither paused, stalled nor partitioned, and by its own log holds a valid lease. When
 * every worker has fenced itself with the store up (the store answers too slowly for the
 * request timeout on this machine: a brown-out), no protocol can run tasks; that time is
 * reported, and not counted against lost tasks or takeover times.
 */
export interface Availability {
  /** Sorted, disjoint: store down, store slower than d, or no live worker. */
  readonly cannotAct: readonly Interval[];
  /** Time in the fault phase with the store up and no worker holding a valid lease. */
  readonly brownOutNs: number;
  /** Time in the fault phase in which the store was up but answered the harness slower than d. */
  readonly storeSlowNs: number;
}

export function availability(instances: Iterable<InstanceBeingRead>, outages: readonly Interval[], storeSlow: readonly Interval[], endNs: number): Availability {
  const events: Array<{ t: number; d: number }> = [];
  for (const i of instances) {
    const from = i.joined ?? Number.POSITIVE_INFINITY;
    const to = i.end ?? Number.POSITIVE_INFINITY;
    if (from >= to) continue;
    events.push({ t: from, d: +1 }, { t: to, d: -1 });
    for (const x of union([...i.pauses, ...i.stalls, ...i.partitions, ...i.fenced])) {
      const a = Math.max(x.a, from);
      const b = Math.min(x.b, to);
      if (b > a) events.push({ t: a, d: -1 }, { t: b, d: +1 });
    }
  }
  events.sort((x, y) => x.t - y.t || x.d - y.d);
  const noHealthy: Interval[] = [];
  let healthy = 0;
  let since = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    const before = healthy;
    healthy += e.d;
    if (before > 0 && healthy <= 0) since = e.t;
    if (before <= 0 && healthy > 0) noHealthy.push({ a: since, b: e.t });
  }
  if (healthy <= 0) noHealthy.push({ a: since, b: Number.POSITIVE_INFINITY });
  // The bound presumes that requests complete within d; stretches in which the store itself
  // was slower than that (measured by the harness) do not count against liveness either.
  const cannotAct = union([...outages, ...noHealthy, ...storeSlow]);
  const outageSet = union(outages);
  const slowSet = union(storeSlow);
  let storeSlowNs = 0;
  for (const x of slowSet) storeSlowNs += measureOutside(Math.max(x.a, 0), Math.max(Math.min(x.b, endNs), Math.max(x.a, 0)), outageSet);
  let brownOutNs = 0;
  for (const x of noHealthy) {
    const a = Math.max(x.a, 0);
    const b = Math.min(x.b, endNs);
    if (b > a) brownOutNs += measureOutside(a, b, outageSet);
  }
  return { cannotAct, brownOutNs, storeSlowNs };
}

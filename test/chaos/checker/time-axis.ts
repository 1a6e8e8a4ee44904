/**
 * The run's time axis: nanoseconds since the cluster became ready (the harness's `ready`
 * record), as plain numbers; intervals on it, and how its times are shown.
 */
export interface Interval {
  a: number;
  b: number;
}

export const ms = (ns: number) => ns / 1e6;
export const fmt = (ns: number) => `${(ns / 1e9).toFixed(3)} s`;

/** Merges intervals into a sorted disjoint list. */
export function union(list: readonly Interval[]): Interval[] {
  const sorted = [...list].filter((x) => x.b > x.a).sort((x, y) => x.a - y.a);
  const out: Interval[] = [];
  for (const x of sorted) {
    const last = out[out.length - 1];
    if (last && x.a <= last.b) last.b = Math.max(last.b, x.b);
    else out.push({ ...x });
  }
  return out;
}

/** Length of [a, b] not covered by the sorted disjoint `holes`. */
export function measureOutside(a: number, b: number, holes: readonly Interval[]): number {
  let total = b - a;
  for (const h of holes) {
    if (h.b <= a) continue;
    if (h.a >= b) break;
    total -= Math.min(b, h.b) - Math.max(a, h.a);
  }
  return total;
}

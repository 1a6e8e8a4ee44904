/**
 * Summaries over repeated trials. p99 is nearest-rank: the smallest value that at least 99 %
 * of the trials do not exceed. With fewer than 100 trials that is the largest value, which is
 * what the report should show: no interpolation that invents a figure nobody measured.
 */
export interface Summary {
  n: number;
  median: number;
  p99: number;
  min: number;
  max: number;
}

function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

export function median(values: readonly number[]): number {
  const s = sorted(values);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  const s = sorted(values);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1]!;
}

export function summarize(values: readonly number[]): Summary {
  const s = sorted(values);
  return { n: s.length, median: median(s), p99: percentile(s, 99), min: s[0] ?? Number.NaN, max: s.at(-1) ?? Number.NaN };
}

import type { Summary } from './stats.js';

/** Formatting shared by every section: one way to print a time, a rate, a ratio, a table. */
export function seconds(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function count(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A figure that needs fewer digits as it grows: 3.5, 35, 3,500. */
export function amount(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  const abs = Math.abs(n);
  return count(n, abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
}

export function medianP99(s: Summary, format: (n: number) => string): string {
  if (s.n === 0) return 'n/a';
  return `${format(s.median)} / ${format(s.p99)}`;
}

export function ratio(baseline: number, keeper: number): string {
  if (!Number.isFinite(baseline) || !Number.isFinite(keeper) || keeper === 0) return 'n/a';
  const r = baseline / keeper;
  return `${r >= 10 ? Math.round(r).toLocaleString('en-US') : r.toFixed(r >= 1 ? 1 : 2)}x`;
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

export const verdict = (met: boolean | undefined) => (met === undefined ? 'n/a' : met ? 'met' : '**missed**');

/**
 * Hand-written SVG charts: a dot plot of trials (every trial a dot, median and p99 marked) and
 * grouped bars. No dependency, readable in any browser and on GitHub.
 */
export interface DotSeries {
  label: string;
  values: number[];
  /** Trials that did not finish: drawn as crosses at the right edge. */
  censored?: number;
  color: string;
}

export interface Marker {
  value: number;
  label: string;
}

const font = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"';
const esc = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

function niceTicks(max: number, count = 6): number[] {
  const raw = max / count;
  const step = [1, 2, 2.5, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) ticks.push(10 ** e);
  return ticks;
}

interface Axis {
  scale(v: number): number;
  ticks: number[];
}

function axis(min: number, max: number, from: number, to: number, log: boolean): Axis {
  if (log) {
    const ticks = logTicks(Math.max(min, 1e-9), max);
    const lo = Math.log10(ticks[0]!);
    const hi = Math.log10(ticks.at(-1)!);
    return { ticks, scale: (v) => from + ((Math.log10(Math.max(v, ticks[0]!)) - lo) / (hi - lo)) * (to - from) };
  }
  const ticks = niceTicks(max);
  const hi = ticks.at(-1)!;
  return { ticks, scale: (v) => from + (v / hi) * (to - from) };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function p99(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(0.99 * s.length) - 1)]!;
}

/** Horizontal dot plot: one row per series, one dot per trial. */
export function dotPlot(options: { title: string; unit: string; series: DotSeries[]; markers?: Marker[]; log?: boolean; format: (v: number) => string }): string {
  const width = 820;
  const left = 230;
  const right = width - 30;
  const rowHeight = 46;
  const top = 78;
  const height = top + options.series.length * rowHeight + 64;
  const all = options.series.flatMap((s) => s.values).concat((options.markers ?? []).map((m) => m.value));
  const min = Math.min(...all.filter((v) => v > 0));
  const max = Math.max(...all) * 1.05;
  const x = axis(min, max, left, right, options.log ?? false);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${font} font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="600">${esc(options.title)}</text>`);
  const axisY = top + options.series.length * rowHeight;
  for (const t of x.ticks) {
    const px = x.scale(t);
    out.push(`<line x1="${px}" y1="${top - 8}" x2="${px}" y2="${axisY}" stroke="#eee"/>`);
    out.push(`<text x="${px}" y="${axisY + 16}" text-anchor="middle" fill="#555">${esc(options.format(t))}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${axisY + 36}" text-anchor="middle" fill="#333">${esc(options.unit)}</text>`);
  for (const [i, m] of (options.markers ?? []).entries()) {
    const px = x.scale(m.value);
    out.push(`<line x1="${px}" y1="${top - 10}" x2="${px}" y2="${axisY}" stroke="#c0392b" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${px + 3}" y="${top - 16 - (i % 2) * 13}" fill="#c0392b" font-size="11">${esc(m.label)}</text>`);
  }
  options.series.forEach((s, row) => {
    const cy = top + row * rowHeight + rowHeight / 2;
    out.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end" fill="#222">${esc(s.label)}</text>`);
    s.values.forEach((v, i) => {
      const jitter = ((i * 7) % 11) - 5;
      out.push(`<circle cx="${x.scale(v).toFixed(1)}" cy="${(cy + jitter).toFixed(1)}" r="3.5" fill="${s.color}" fill-opacity="0.55"/>`);
    });
    for (let i = 0; i < (s.censored ?? 0); i++) out.push(`<text x="${right - 4 - i * 8}" y="${cy + 4}" fill="${s.color}" font-weight="700">x</text>`);
    if (s.values.length > 0) {
      const med = x.scale(median(s.values));
      const p = x.scale(p99(s.values));
      out.push(`<line x1="${med}" y1="${cy - 13}" x2="${med}" y2="${cy + 13}" stroke="#111" stroke-width="2.5"/>`);
      out.push(`<line x1="${p}" y1="${cy - 9}" x2="${p}" y2="${cy + 9}" stroke="#111" stroke-width="1.5" stroke-dasharray="2 2"/>`);
    }
  });
  out.push(`<text x="${left}" y="${height - 8}" fill="#666" font-size="11">dots: trials; solid tick: median; dashed tick: p99 (nearest rank)${options.series.some((s) => s.censored) ? '; x: trial did not finish' : ''}</text>`);
  out.push('</svg>');
  return out.join('\n');
}

export interface BarGroup {
  label: string;
  /** One value per series; undefined draws a "saturated" or "not run" note instead of a bar. */
  values: Array<number | undefined>;
  notes?: Array<string | undefined>;
}

/** Vertical grouped bars, optionally on a log scale. */
export function barChart(options: { title: string; unit: string; series: Array<{ label: string; color: string }>; groups: BarGroup[]; log?: boolean; format: (v: number) => string }): string {
  const width = 760;
  const height = 380;
  const left = 80;
  const right = width - 20;
  const top = 60;
  const bottom = height - 70;
  const values = options.groups.flatMap((g) => g.values).filter((v): v is number => v !== undefined && v > 0);
  const max = Math.max(...values) * 1.15;
  const min = Math.min(...values);
  const y = axis(min, max, bottom, top, options.log ?? false);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${font} font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="600">${esc(options.title)}</text>`);
  for (const t of y.ticks) {
    const py = y.scale(t);
    out.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${py + 4}" text-anchor="end" fill="#555">${esc(options.format(t))}</text>`);
  }
  out.push(`<text x="16" y="${(top + bottom) / 2}" transform="rotate(-90 16 ${(top + bottom) / 2})" text-anchor="middle" fill="#333">${esc(options.unit)}</text>`);
  const groupWidth = (right - left) / options.groups.length;
  const barWidth = Math.min(60, (groupWidth * 0.8) / options.series.length);
  options.groups.forEach((g, gi) => {
    const gx = left + gi * groupWidth + (groupWidth - barWidth * options.series.length) / 2;
    g.values.forEach((v, si) => {
      const bx = gx + si * barWidth;
      const color = options.series[si]!.color;
      if (v === undefined || !(v > 0)) {
        out.push(`<text x="${bx + barWidth / 2}" y="${bottom - 6}" text-anchor="middle" fill="${color}" font-size="10" transform="rotate(-90 ${bx + barWidth / 2} ${bottom - 6})">${esc(g.notes?.[si] ?? 'n/a')}</text>`);
        return;
      }
      const py = y.scale(v);
      out.push(`<rect x="${bx + 2}" y="${py}" width="${barWidth - 4}" height="${bottom - py}" fill="${color}"/>`);
      out.push(`<text x="${bx + barWidth / 2}" y="${py - 4}" text-anchor="middle" fill="#222" font-size="10">${esc(options.format(v))}</text>`);
    });
    out.push(`<text x="${left + gi * groupWidth + groupWidth / 2}" y="${bottom + 18}" text-anchor="middle" fill="#222">${esc(g.label)}</text>`);
  });
  options.series.forEach((s, i) => {
    const lx = left + i * 200;
    out.push(`<rect x="${lx}" y="${height - 30}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 18}" y="${height - 20}" fill="#222">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Lines over time (memory samples). */
export function lineChart(options: { title: string; unit: string; xUnit: string; series: Array<{ label: string; color: string; points: Array<[number, number]> }>; format: (v: number) => string }): string {
  const width = 760;
  const height = 340;
  const left = 80;
  const right = width - 20;
  const top = 50;
  const bottom = height - 70;
  const xs = options.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = options.series.flatMap((s) => s.points.map((p) => p[1]));
  const x = axis(0, Math.max(...xs, 1), left, right, false);
  const y = axis(0, Math.max(...ys, 1) * 1.15, bottom, top, false);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${font} font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="600">${esc(options.title)}</text>`);
  for (const t of y.ticks) {
    const py = y.scale(t);
    out.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${py + 4}" text-anchor="end" fill="#555">${esc(options.format(t))}</text>`);
  }
  for (const t of x.ticks) out.push(`<text x="${x.scale(t)}" y="${bottom + 16}" text-anchor="middle" fill="#555">${t}</text>`);
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 34}" text-anchor="middle" fill="#333">${esc(options.xUnit)}</text>`);
  out.push(`<text x="16" y="${(top + bottom) / 2}" transform="rotate(-90 16 ${(top + bottom) / 2})" text-anchor="middle" fill="#333">${esc(options.unit)}</text>`);
  options.series.forEach((s, i) => {
    const d = s.points.map(([px, py], j) => `${j === 0 ? 'M' : 'L'}${x.scale(px).toFixed(1)},${y.scale(py).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    const lx = left + i * 260;
    out.push(`<rect x="${lx}" y="${height - 22}" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 18}" y="${height - 12}" fill="#222">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

export const colors = { keeper: '#1f6feb', keeperAlt: '#57a3ff', keeperThird: '#9cc7ff', baseline: '#d4731c', baselineAlt: '#f0a35e' };

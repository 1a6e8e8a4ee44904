import type { TimelineModel } from './checker/check-result.js';

/**
 * The run as a picture, hand-written SVG (no dependency): one lane per worker slot with the
 * number of tasks it had at work per time bucket, the processes that held the slot (and
 * their clocks), and marks for every fault, every declaration of death and every takeover.
 */
const colors = {
  running: '#4c78a8',
  kill: '#d62728',
  term: '#2ca02c',
  pause: '#ff7f0e',
  stall: '#ffbb78',
  partition: '#9467bd',
  net: '#bcbd22',
  outage: '#7f7f7f',
  clock: '#17becf',
  declared: '#111111',
  falseDeclared: '#d62728',
  takeover: '#8c564b',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function tickStep(totalS: number): number {
  for (const step of [5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (totalS / step <= 16) return step;
  return 7200;
}

export function renderTimelineSvg(model: TimelineModel, title: string): string {
  const width = 1400;
  const left = 190;
  const right = 20;
  const top = 56;
  const laneH = 56;
  const gap = 10;
  const plotW = width - left - right;
  const lanesH = model.lanes.length * (laneH + gap);
  const legendY = top + lanesH + 34;
  const height = legendY + 48;
  const endMs = Math.max(model.endMs, 1);
  const x = (t: number) => left + (Math.min(Math.max(t, 0), endMs) / endMs) * plotW;
  const laneIndex = new Map(model.lanes.map((l, i) => [l.slot, i]));
  const laneTop = (slot: string | undefined) => top + (laneIndex.get(slot ?? '') ?? 0) * (laneH + gap);
  const maxRunning = Math.max(1, ...model.lanes.flatMap((l) => l.running));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${left}" y="38" fill="#555">blue area: tasks at work per worker slot (max ${maxRunning}); bands and marks: faults, declarations of death, takeovers. Time in seconds after all workers joined.</text>`);

  // Axis.
  const step = tickStep(endMs / 1000);
  for (let s = 0; s * 1000 <= endMs; s += step) {
    const px = x(s * 1000);
    out.push(`<line x1="${px.toFixed(1)}" y1="${top - 6}" x2="${px.toFixed(1)}" y2="${top + lanesH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${px.toFixed(1)}" y="${top + lanesH + 14}" text-anchor="middle" fill="#555">${s}</text>`);
  }
  out.push(`<text x="${left - 8}" y="${top + lanesH + 14}" text-anchor="end" fill="#555">time (s)</text>`);

  for (const lane of model.lanes) {
    const y0 = laneTop(lane.slot);
    out.push(`<rect x="${left}" y="${y0}" width="${plotW}" height="${laneH}" fill="#f7f7f7"/>`);
    out.push(`<text x="${left - 8}" y="${y0 + 16}" text-anchor="end" font-weight="bold">${esc(lane.slot)}</text>`);
    // Which process held the slot when: a thin bar per instance along the lane's top.
    lane.instances.forEach((i, k) => {
      const a = x(i.fromMs);
      const b = x(i.toMs);
      out.push(`<rect x="${a.toFixed(1)}" y="${y0}" width="${Math.max(1, b - a).toFixed(1)}" height="4" fill="${k % 2 === 0 ? '#999' : '#555'}"><title>${esc(`${i.name} as node ${i.node}${i.clock ? `, clock ${i.clock}` : ''}, ${(i.fromMs / 1000).toFixed(1)}-${(i.toMs / 1000).toFixed(1)} s`)}</title></rect>`);
    });
    // The processes that held the slot, two per line, with their clocks.
    const names = lane.instances.map((i) => `${i.name}${i.node !== i.name ? `=${i.node}` : ''}${i.clock ? ` ${i.clock}` : ''}`);
    const rows = [names.slice(0, 2).join(', '), names.slice(2, 4).join(', ') + (names.length > 4 ? ` +${names.length - 4}` : '')].filter((r) => r !== '');
    rows.forEach((r, k) => out.push(`<text x="${left - 8}" y="${y0 + 29 + k * 11}" text-anchor="end" fill="#555" font-size="8.5">${esc(r)}</text>`));
    // Tasks at work, as a step area.
    const base = y0 + laneH;
    const h = laneH - 8;
    const pts: string[] = [`${x(0).toFixed(1)},${base}`];
    lane.running.forEach((count, b) => {
      const a = x(b * model.bucketMs);
      const e = x((b + 1) * model.bucketMs);
      const y = base - (count / maxRunning) * h;
      pts.push(`${a.toFixed(1)},${y.toFixed(1)}`, `${e.toFixed(1)},${y.toFixed(1)}`);
    });
    pts.push(`${x(endMs).toFixed(1)},${base}`);
    out.push(`<polygon points="${pts.join(' ')}" fill="${colors.running}" opacity="0.55"/>`);
  }

  // Store outages span every lane.
  for (const f of model.faults.filter((f) => f.kind === 'outage')) {
    const a = x(f.fromMs);
    const b = x(f.toMs ?? endMs);
    out.push(`<rect x="${a.toFixed(1)}" y="${top - 6}" width="${Math.max(1, b - a).toFixed(1)}" height="${lanesH + 6}" fill="${colors.outage}" opacity="0.25"><title>${esc(f.label)} ${(f.fromMs / 1000).toFixed(1)}-${((f.toMs ?? endMs) / 1000).toFixed(1)} s</title></rect>`);
  }
  // Faults on one worker.
  for (const f of model.faults) {
    if (f.kind === 'outage' || !f.slot) continue;
    const y0 = laneTop(f.slot);
    const a = x(f.fromMs);
    const tip = `<title>${esc(`${f.label} at ${(f.fromMs / 1000).toFixed(1)} s${f.toMs !== undefined ? ` until ${(f.toMs / 1000).toFixed(1)} s` : ''}`)}</title>`;
    if (f.kind === 'pause' || f.kind === 'stall' || f.kind === 'partition') {
      const b = x(f.toMs ?? endMs);
      out.push(`<rect x="${a.toFixed(1)}" y="${y0 + 5}" width="${Math.max(1, b - a).toFixed(1)}" height="${laneH - 5}" fill="${colors[f.kind]}" opacity="0.3">${tip}</rect>`);
    } else if (f.kind === 'net') {
      const b = x(f.toMs ?? endMs);
      out.push(`<rect x="${a.toFixed(1)}" y="${y0 + laneH - 5}" width="${Math.max(1, b - a).toFixed(1)}" height="5" fill="${colors.net}">${tip}</rect>`);
    } else if (f.kind === 'kill' || f.kind === 'term') {
      out.push(`<line x1="${a.toFixed(1)}" y1="${y0}" x2="${a.toFixed(1)}" y2="${y0 + laneH}" stroke="${colors[f.kind]}" stroke-width="2">${tip}</line>`);
    } else if (f.kind === 'clock') {
      out.push(`<circle cx="${a.toFixed(1)}" cy="${y0 + 12}" r="3.5" fill="${colors.clock}">${tip}</circle>`);
    }
  }
  // Takeovers: from the fault to the start of the victim's last task elsewhere.
  for (const t of model.takeovers) {
    const y = laneTop(t.slot) + 20;
    const a = x(t.faultMs);
    const b = x(t.doneMs);
    out.push(`<line x1="${a.toFixed(1)}" y1="${y}" x2="${b.toFixed(1)}" y2="${y}" stroke="${colors.takeover}" stroke-width="2"/>`);
    out.push(`<path d="M ${b.toFixed(1)} ${y - 4} L ${(b + 5).toFixed(1)} ${y} L ${b.toFixed(1)} ${y + 4} Z" fill="${colors.takeover}"><title>${esc(`${t.tasks} tasks running elsewhere ${((t.doneMs - t.faultMs) / 1000).toFixed(2)} s after the fault`)}</title></path>`);
  }
  // Declarations of death, on the lane of the declared node.
  for (const d of model.declarations) {
    const y = laneTop(d.slot) + 34;
    const px = x(d.atMs);
    const fill = d.justified ? colors.declared : colors.falseDeclared;
    out.push(`<path d="M ${px.toFixed(1)} ${y - 5} L ${(px + 4).toFixed(1)} ${y} L ${px.toFixed(1)} ${y + 5} L ${(px - 4).toFixed(1)} ${y} Z" fill="${fill}"><title>${esc(`${d.by} declared ${d.peer} dead at ${(d.atMs / 1000).toFixed(2)} s${d.justified ? '' : ' (FALSE TAKEOVER)'}`)}</title></path>`);
  }

  // Legend.
  const legend: Array<[string, string, string]> = [
    ['rect', colors.running, 'tasks at work'],
    ['line', colors.kill, 'SIGKILL'],
    ['line', colors.term, 'SIGTERM (leave)'],
    ['rect', colors.pause, 'SIGSTOP .. SIGCONT'],
    ['rect', colors.stall, 'stall (short SIGSTOP)'],
    ['rect', colors.partition, 'partition'],
    ['rect', colors.net, 'throttle / 5xx / lost replies'],
    ['rect', colors.outage, 'store outage'],
    ['dot', colors.clock, 'skewed clock (start)'],
    ['diamond', colors.declared, 'declared dead'],
    ['diamond', colors.falseDeclared, 'false declaration'],
    ['arrow', colors.takeover, 'takeover done'],
  ];
  let lx = left;
  let ly = legendY;
  for (const [shape, color, label] of legend) {
    const w = 24 + label.length * 6.2;
    if (lx + w > width - right) {
      lx = left;
      ly += 18;
    }
    if (shape === 'rect') out.push(`<rect x="${lx}" y="${ly - 8}" width="14" height="10" fill="${color}" opacity="0.6"/>`);
    else if (shape === 'line') out.push(`<line x1="${lx + 7}" y1="${ly - 10}" x2="${lx + 7}" y2="${ly + 3}" stroke="${color}" stroke-width="2"/>`);
    else if (shape === 'dot') out.push(`<circle cx="${lx + 7}" cy="${ly - 3}" r="4" fill="${color}"/>`);
    else if (shape === 'diamond') out.push(`<path d="M ${lx + 7} ${ly - 9} L ${lx + 11} ${ly - 3} L ${lx + 7} ${ly + 3} L ${lx + 3} ${ly - 3} Z" fill="${color}"/>`);
    else out.push(`<path d="M ${lx} ${ly - 3} L ${lx + 10} ${ly - 3} M ${lx + 10} ${ly - 7} L ${lx + 15} ${ly - 3} L ${lx + 10} ${ly + 1} Z" stroke="${color}" stroke-width="2" fill="${color}"/>`);
    out.push(`<text x="${lx + 19}" y="${ly}">${esc(label)}</text>`);
    lx += w;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

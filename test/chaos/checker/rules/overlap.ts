// No overlap (safety): no two runs of a task at work at once, with 0 ns tolerance, each run's span ending at its last work because a stopped or killed owner logs its stop late or never.
import type { Violation } from '../check-result.js';
import type { Run, RunModel } from '../run-model.js';
import { fmt } from '../time-axis.js';

export function findOverlaps(model: RunModel): Violation[] {
  const overlaps: Violation[] = [];
  for (const [task, list] of model.runsByTask) {
    const working = list.filter((r) => r.works > 0).sort((x, y) => x.start - y.start);
    // A run whose span starts inside an earlier run's span.
    let open: Run[] = [];
    for (const r of working) {
      open = open.filter((o) => o.lastWork >= r.start);
      for (const o of open) {
        const detail = o.lastWork <= r.lastWork ? `${o.instance} worked at ${fmt(o.lastWork)}, inside ${r.instance}'s span from ${fmt(r.start)}` : `${r.instance} worked from ${fmt(r.firstWork)} inside ${o.instance}'s span up to ${fmt(o.lastWork)}`;
        overlaps.push({ rule: 'overlap', text: `${task}: ${o.instance} (node ${o.node}, token ${o.token}) and ${r.instance} (node ${r.node}, token ${r.token}) both worked: ${detail}` });
      }
      open.push(r);
    }
  }
  return overlaps;
}

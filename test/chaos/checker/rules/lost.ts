// Lost tasks (liveness): no task goes without work for longer than the failover bound plus one work interval, counting only time in which the cluster could act (store up and answering within d, a worker live, and the task not held by a stubborn leave), since no protocol can run tasks without either.
import type { Violation } from '../check-result.js';
import type { RunModel } from '../run-model.js';
import { fmt, measureOutside, union, type Interval } from '../time-axis.js';

export function findLostTasks(model: RunModel): Violation[] {
  const lost: Violation[] = [];
  const { endNs } = model;
  const cannotAct = model.availability.cannotAct;
  const lostLimit = model.boundNs + model.run.workIntervalMs * 1e6;
  for (const task of model.taskIds) {
    // Stretches without any `work` event for the task.
    const covered = union((model.runsByTask.get(task) ?? []).flatMap((r) => r.segments));
    const gaps: Interval[] = [];
    let cursor = 0;
    for (const c of covered) {
      if (c.b <= cursor) continue;
      if (c.a > cursor) gaps.push({ a: cursor, b: Math.min(c.a, endNs) });
      cursor = Math.max(cursor, c.b);
      if (cursor >= endNs) break;
    }
    if (cursor < endNs) gaps.push({ a: cursor, b: endNs });
    const stuck = model.stuckInLeave.get(task);
    const holes = stuck ? union([...cannotAct, ...stuck]) : cannotAct;
    for (const g of gaps) {
      if (g.b <= g.a) continue;
      const live = measureOutside(g.a, g.b, holes);
      if (live > lostLimit) {
        lost.push({ rule: 'lost task', text: `${task}: no work from ${fmt(g.a)} to ${fmt(g.b)}, ${(live / 1e9).toFixed(2)} s of it while the store was up and a worker was live (limit ${(lostLimit / 1e9).toFixed(2)} s)` });
      }
    }
  }
  return lost;
}

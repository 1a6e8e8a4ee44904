// Fencing tokens (safety): a task's token only grows, so a lower token at work after a higher one, or a table token below one already at work, means fencing failed.
import type { Violation } from '../check-result.js';
import type { RunModel } from '../run-model.js';
import { fmt } from '../time-axis.js';

export function findTokenRegressions(model: RunModel): Violation[] {
  const regressions: Violation[] = [];
  // In the logs: a `work` event with a lower token later (by mono_ns) than a `work` event
  // with a higher token, for the same task.
  for (const [task, list] of model.runsByTask) {
    const working = list.filter((r) => r.works > 0).sort((x, y) => x.start - y.start);
    for (const hi of working) {
      for (const lo of working) {
        if (lo.token < hi.token && lo.lastWork > hi.firstWork) {
          regressions.push({ rule: 'token regression', text: `${task}: token ${lo.token} (${lo.instance}) worked at ${fmt(lo.lastWork)}, after token ${hi.token} (${hi.instance}) worked at ${fmt(hi.firstWork)}` });
        }
      }
    }
  }
  // In the final table: of the tasks the end-state rule looks at (created, ready), a token
  // lower than one already seen at work.
  const table = model.table;
  if (!table) return regressions;
  const created = new Set(model.taskIds);
  const maxAuditToken = new Map<string, number>();
  // Tokens at work before the table was read (the 'end' record precedes the scan).
  for (const [task, list] of model.runsByTask) maxAuditToken.set(task, Math.max(...list.filter((r) => r.works > 0 && r.firstWork <= model.endNs).map((r) => r.token), -1));
  for (const item of table.tasks) {
    const id = String(item['id']);
    if (!created.has(id) || item['state'] !== 'ready') continue;
    const token = Number(item['token']);
    if (token < (maxAuditToken.get(id) ?? -1)) {
      regressions.push({ rule: 'table token behind', text: `${id}: table token ${token} is lower than token ${maxAuditToken.get(id)} already seen at work` });
    }
  }
  return regressions;
}

// End state (liveness): once the faults stop, every task created is in the final table once, ready, owned by a live node that is at work on it with the table's token, because that is where the protocol promises to settle.
import type { Violation } from '../check-result.js';
import type { RunModel } from '../run-model.js';

export interface EndState {
  violations: Violation[];
  findings: string[];
}

export function checkEndState(model: RunModel): EndState {
  const out: EndState = { violations: [], findings: [] };
  const { table, taskIds, byNode, windowNs } = model;
  if (!table) {
    out.violations.push({ rule: 'no final table', text: 'the run ended before the final table was read' });
    return out;
  }
  const snapNs = model.snapNs;
  const atEnd = model.audit.atEnd;
  const created = new Set(taskIds);
  const seen = new Map<string, number>();
  const nodes = new Map(table.nodes.map((n) => [String(n['id']), n]));
  let fencedAtEnd = 0;
  for (const item of table.tasks) {
    const id = String(item['id']);
    seen.set(id, (seen.get(id) ?? 0) + 1);
    if (model.finiteTasks.has(id)) continue; // judged by the at-most-once rule
    if (!created.has(id)) {
      out.violations.push({ rule: 'unexpected task', text: `${id} is in the table but was never created` });
      continue;
    }
    if (item['state'] !== 'ready') {
      out.violations.push({ rule: 'task state', text: `${id} is '${String(item['state'])}' at the end (a demo task runs until revoked)` });
      continue;
    }
    const owner = item['owner'] === undefined || item['owner'] === '#free' ? null : String(item['owner']);
    const token = Number(item['token']);
    if (!owner) {
      out.violations.push({ rule: 'unowned at end', text: `${id} has no owner at the end` });
      continue;
    }
    const node = nodes.get(owner);
    if (!node || node['state'] !== 'alive' || Number(node['inc']) !== Number(item['ownerInc'])) {
      out.violations.push({ rule: 'owner not alive', text: `${id} is owned by ${owner} (inc ${String(item['ownerInc'])}), which is ${node ? `'${String(node['state'])}' with inc ${String(node['inc'])}` : 'not in the table'} at the end` });
      continue;
    }
    // Who worked on it in the window after the snapshot: its owner under the table's token,
    // or someone under a newer one (it moved on after the scan, which is no fault).
    const runningNow = atEnd.get(id);
    const byOwner = runningNow?.has(`${owner}|${token}`) ?? false;
    const movedOn = [...(runningNow ?? [])].some((k) => Number(k.split('|')[1]) > token);
    const ownerFenced = (byNode.get(owner) ?? []).some((i) => i.fenced.some((f) => f.a <= snapNs! + windowNs && f.b >= snapNs!));
    if (!byOwner && !movedOn && ownerFenced) {
      fencedAtEnd += 1;
      continue;
    }
    if (!byOwner && !movedOn) {
      out.violations.push({ rule: 'owner not running it', text: `${id}: the table names ${owner} with token ${token}, but ${runningNow ? `only ${[...runningNow].join(', ')} worked on it` : 'nobody worked on it'} in the ${windowNs / 1e6} ms after the snapshot` });
    }
  }
  for (const id of taskIds) if (!seen.has(id)) out.violations.push({ rule: 'vanished task', text: `${id} was created but is not in the final table` });
  if (fencedAtEnd > 0) out.findings.push(`${fencedAtEnd} tasks were not at work after the final snapshot because their owner (alive in the table) had fenced itself then; not counted as violations`);
  return out;
}

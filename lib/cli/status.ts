import type { Unplaceable } from '../admin.js';
import { formatLabels } from '../labels.js';
import { taskPriority, taskWeight, type NodeItem, type TaskItem } from '../store/store.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The start of a task's payload or checkpoint, as JSON on one line (`keeper task show` prints all of it). */
function preview(value: unknown): string {
  if (value === undefined) return '-';
  const json = JSON.stringify(value);
  return json.length > 40 ? `${json.slice(0, 39)}…` : json;
}

/** A node's state with what qualifies it: an operator's drain, a leave under way. */
function nodeState(n: NodeItem): string {
  const marks = [...(n.draining ? ['draining'] : []), ...(n.leaving && n.state === 'alive' ? ['leaving'] : [])];
  return marks.length > 0 ? `${n.state} (${marks.join(', ')})` : n.state;
}

/** The human form of `keeper status` and `keeper task ls`. */
export function formatStatus(status: { nodes: NodeItem[]; tasks: TaskItem[]; unplaceable?: Unplaceable[] }, show: { nodes?: boolean } = {}): string {
  const out: string[] = [];
  // Weights are shown only where some task has one: a cluster without them reads as before.
  const weighted = status.tasks.some((t) => taskWeight(t) !== 1);
  // So are labels and the tasks' selectors.
  const labelled = status.nodes.some((n) => n.labels !== undefined);
  const selective = status.tasks.some((t) => t.require !== undefined || t.prefer !== undefined);
  if (show.nodes !== false) {
    const owned = new Map<string, number>();
    const weight = new Map<string, number>();
    for (const t of status.tasks) {
      if (!t.owner) continue;
      owned.set(t.owner, (owned.get(t.owner) ?? 0) + 1);
      weight.set(t.owner, (weight.get(t.owner) ?? 0) + taskWeight(t));
    }
    out.push(`NODES (${status.nodes.length})`);
    if (status.nodes.length > 0) {
      out.push(
        table([
          ['ID', 'INCARNATION', 'COUNTER', 'STATE', 'TASKS', ...(weighted ? ['WEIGHT/CAPACITY'] : []), 'VERSION', ...(labelled ? ['LABELS'] : [])],
          ...status.nodes.map((n) => [
            n.id,
            String(n.inc),
            String(n.counter),
            nodeState(n),
            String(owned.get(n.id) ?? 0),
            ...(weighted ? [`${weight.get(n.id) ?? 0}/${n.capacity}`] : []),
            n.version ?? '-',
            ...(labelled ? [formatLabels(n.labels)] : []),
          ]),
        ]),
      );
    }
    out.push('');
  }
  out.push(`TASKS (${status.tasks.length})`);
  if (status.tasks.length > 0) {
    out.push(
      table([
        ['ID', 'TYPE', 'PRIORITY', ...(weighted ? ['WEIGHT'] : []), ...(selective ? ['REQUIRE', 'PREFER'] : []), 'OWNER', 'TOKEN', 'STATE', 'PAYLOAD', 'CHECKPOINT'],
        ...status.tasks.map((t) => [
          t.id,
          t.type,
          String(taskPriority(t)),
          ...(weighted ? [String(taskWeight(t))] : []),
          ...(selective ? [formatLabels(t.require), formatLabels(t.prefer)] : []),
          t.owner ?? '-',
          String(t.token),
          t.releaseRequested ? `${t.state} (release requested)` : t.state,
          preview(t.payload),
          preview(t.checkpoint),
        ]),
      ]),
    );
  }
  if (status.unplaceable && status.unplaceable.length > 0) {
    out.push('', `UNPLACEABLE (${status.unplaceable.length}): free tasks no live node can take; they wait in the pool`);
    out.push(table([['ID', 'WHY'], ...status.unplaceable.map((u) => [u.id, u.reason])]));
  }
  return `${out.join('\n')}\n`;
}

// At most once (safety, finite tasks): a finite task's side effect happens once, or again only after the node that did it first failed before it could record the outcome; and every finite task completes.
import type { Violation } from '../check-result.js';
import type { Effect, Instance, RunModel } from '../run-model.js';
import { fmt, type Interval } from '../time-axis.js';

/**
 * The rule of the simulator (test/support/simulation.ts, "side effect ... again"), on the
 * audit logs: a finite task's outcome is written by the run that did the effect, after the
 * effect. Only a fault of that node between its effect and the repeat can keep the outcome
 * out of the table and let the task run again: it was killed, left (its process ended),
 * exited on its own, was paused or partitioned, or its lease lapsed because it could not
 * reach the store (its own "lease expired" line). Anything else (a stall, a skewed clock, a
 * fault of another node, an outage the node rode out with its lease) is no excuse: the node
 * wrote its outcome in time, or should have.
 */
export function checkAtMostOnce(model: RunModel): { violations: Violation[]; effects: number; repeated: number } {
  const violations: Violation[] = [];
  let effects = 0;
  let repeated = 0;
  const doneInTable = new Set((model.table?.tasks ?? []).filter((t) => t['state'] === 'done').map((t) => String(t['id'])));
  for (const task of model.finiteTasks.keys()) {
    const done = [...(model.audit.effects.get(task) ?? [])].sort((a, b) => a.at - b.at);
    effects += done.length;
    repeated += Math.max(0, done.length - 1);
    for (let i = 1; i < done.length; i++) {
      const [first, again] = [done[i - 1]!, done[i]!];
      const excuse = faultBetween(model.instances.get(first.instance), first, again);
      if (!excuse) {
        violations.push({
          rule: 'finite task repeated',
          text: `${task} (finite): side effect on ${first.instance} at ${fmt(first.at)} (token ${first.token}), again on ${again.instance} at ${fmt(again.at)} (token ${again.token}), with no fault of ${first.instance} in between`,
        });
      }
    }
    // Completed: its outcome is in the final table (without a table, an effect is the best evidence left).
    const completed = model.table ? doneInTable.has(task) : done.length > 0;
    if (!completed) {
      const state = model.table?.tasks.find((t) => String(t['id']) === task)?.['state'];
      violations.push({ rule: 'finite task not completed', text: `${task} (finite, created at ${fmt(model.finiteTasks.get(task)!)}): ${done.length} side effects, and it is ${state === undefined ? 'not in the final table' : `'${String(state)}'`} at the end, not 'done'` });
    }
  }
  return { violations, effects, repeated };
}

/** The fault of `instance` between `first` and `again` that excuses the repeat, named; undefined if none. */
function faultBetween(i: Instance | undefined, first: Effect, again: Effect): string | undefined {
  if (!i) return undefined;
  const within = (t: number | undefined) => t !== undefined && t >= first.at && t <= again.at;
  const overlapping = (list: readonly Interval[]) => list.find((x) => x.a <= again.at && x.b >= first.at);
  if (within(i.kill)) return `killed at ${fmt(i.kill!)}`;
  if (within(i.term)) return `left (SIGTERM at ${fmt(i.term!)})`;
  if (within(i.exitUnexpected)) return `exited at ${fmt(i.exitUnexpected!)}`;
  const p = overlapping(i.pauses);
  if (p) return `paused from ${fmt(p.a)}`;
  const q = overlapping(i.partitions);
  if (q) return `partitioned from ${fmt(q.a)}`;
  const l = overlapping(i.leaseLost);
  if (l) return `its lease lapsed from ${fmt(l.a)}`;
  return undefined;
}

// Work after stop (safety): a run that has logged its own `stop` has given the task up, so any later `work` of that run is work without the task.
import type { Violation } from '../check-result.js';
import type { RunModel } from '../run-model.js';
import { fmt } from '../time-axis.js';

/** The audit reader notes each such line as it streams past (single work events are not kept). */
export function findWorkAfterStop(model: RunModel): Violation[] {
  return model.audit.lateWork.map((w) => ({ rule: 'work after stop', text: `${w.task}: ${w.instance} worked at ${fmt(w.at)} with token ${w.token} after its run stopped at ${fmt(w.stoppedAt)}` }));
}

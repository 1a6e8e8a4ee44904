// Takeover time (liveness): every task of a failed node runs again under a newer token within the failover bound for that many tasks, counting only time in which the cluster could act.
import type { TimelineModel, Violation } from '../check-result.js';
import type { Run, RunModel } from '../run-model.js';
import { fmt, measureOutside, ms } from '../time-axis.js';

/**
 * Moves in flight at once during a takeover, as the README's failover bound states it
 * (restated, not imported: the checker stays independent of lib/): batch moves with 100
 * tasks in flight, then single moves 32 at a time for any batch that failed.
 */
const batchMovesInFlight = 100;
const moveConcurrency = 32;

export interface Takeovers {
  /** Fault to first start under a newer token, after SIGKILL, SIGSTOP and partition. */
  takeoverMs: number[];
  byKind: Record<string, number[]>;
  /** The same after SIGTERM: a leave hands its tasks on (a stubborn leave's prompt tasks too). */
  handoverMs: number[];
  /** Tasks the failed node got going again itself before anyone took them. */
  resumedInPlace: number;
  slow: Violation[];
  /** Tasks of a failed node that never ran again under a newer token (lost tasks). */
  notTakenOver: Violation[];
  marks: TimelineModel['takeovers'];
}

/**
 * From the fault to the first `start` of each of the victim's tasks under a newer token,
 * unless the victim had resumed the task under its own token before (then it kept the task,
 * and the later move is a handover).
 */
export function checkTakeovers(model: RunModel): Takeovers {
  const { endNs, runsByTask } = model;
  const B = model.boundNs;
  const cannotAct = model.availability.cannotAct;
  const out: Takeovers = { takeoverMs: [], byKind: {}, handoverMs: [], resumedInPlace: 0, slow: [], notTakenOver: [], marks: [] };
  for (const f of model.failures) {
    const victim = model.instances.get(f.instance)!;
    let done = f.at;
    let count = 0;
    // The victim's tasks: those it was the last process to start before the fault. That
    // includes tasks it had stopped only because it was fenced at that moment; it does not
    // include tasks it had handed on (someone else started them before the fault).
    const victimTasks: Array<[string, readonly Run[], Run]> = [];
    for (const [task, list] of runsByTask) {
      if (model.finiteTasks.has(task)) continue; // a finite task ends on its own; the at-most-once rule judges it
      let last: Run | undefined;
      for (const r of list) if (r.start <= f.at && (!last || r.start > last.start)) last = r;
      if (last && last.instance === f.instance) victimTasks.push([task, list, last]);
    }
    // The bound grows with the tasks to move (failoverBoundMs(config, n) in lib/config.ts).
    const rounds = Math.ceil(victimTasks.length / batchMovesInFlight) + Math.ceil(victimTasks.length / moveConcurrency);
    const boundNs = B + rounds * model.settings.requestTimeoutMs * 1e6;
    // A stubborn leave: the tasks it named as stuck stay with the node until its leave ends
    // (its last heartbeat follows that line at once; else its exit), then failover takes them.
    const stuck = f.kind === 'stubborn-term' ? model.workerLogs.stuckLeaves.find((l) => l.instance === f.instance) : undefined;
    const stuckTasks = new Set(stuck?.tasks ?? []);
    const leaveEnd = stuck?.at ?? victim.exitAt ?? f.at;
    const leaves = f.kind === 'term' || f.kind === 'stubborn-term';
    for (const [task, list, last] of victimTasks) {
      // Taken over: the first run after the fault under a newer token, by any process (the
      // victim itself counts once it has rejoined as a new incarnation and got the task back).
      const next = list.filter((r) => r.start >= f.at && r.token > last.token).sort((x, y) => x.start - y.start)[0];
      // The victim got going again with the task itself first (a partition or pause that
      // healed before anyone declared it dead): a later move under a newer token is a
      // handover (rebalancing, a leave), not this fault's takeover.
      const resumedFirst = next !== undefined && list.some((r) => r.instance === f.instance && r.token === last.token && r.segments.some((seg) => seg.a > f.at && seg.a < next.start));
      if (resumedFirst && f.kind !== 'kill' && !leaves) {
        out.resumedInPlace += 1;
        continue;
      }
      if (next && next.start <= endNs) {
        const took = ms(next.start - f.at);
        count += 1;
        done = Math.max(done, next.start);
        if (leaves && !stuckTasks.has(task)) {
          out.handoverMs.push(took);
          continue;
        }
        // Measured from the fault, or for a stuck task from the end of the leave.
        const from = stuckTasks.has(task) ? leaveEnd : f.at;
        const tookFrom = ms(next.start - from);
        out.takeoverMs.push(tookFrom);
        (out.byKind[f.kind] ??= []).push(tookFrom);
        // Compared with the bound: the time in which the cluster could act (availability.ts).
        const acting = measureOutside(from, next.start, cannotAct);
        if (acting > boundNs) {
          const since = from === f.at ? `${f.kind} at ${fmt(f.at)}` : `${f.kind} at ${fmt(f.at)}, stuck until its leave ended at ${fmt(from)}`;
          out.slow.push({ rule: 'takeover slower than the bound', text: `${task} of ${f.instance} (${since}): started with token ${next.token} on ${next.instance} after ${(tookFrom / 1000).toFixed(2)} s (${(acting / 1e9).toFixed(2)} s of it with the store up and a live worker) > bound ${(boundNs / 1e9).toFixed(2)} s for ${victimTasks.length} tasks` });
        }
        continue;
      }
      // Not moved: the victim may have kept it (a partition healed before anyone could
      // declare it dead). Whether it then ran in time is the lost-task check's concern.
      const again = list.some((r) => r.instance === f.instance && r.token === last.token && r.works > 0 && r.lastWork > f.at);
      if (again && f.kind !== 'kill' && !leaves) out.resumedInPlace += 1;
      else if (f.at + B < endNs) {
        out.notTakenOver.push({ rule: 'not taken over', text: `${task}, held by ${f.instance} when it was hit (${f.kind} at ${fmt(f.at)}), never ran again under a newer token` });
      }
    }
    if (count > 0) out.marks.push({ slot: victim.slot, faultMs: ms(f.at), doneMs: ms(done), tasks: count });
  }
  return out;
}

/** After each store outage: how soon every task that ran before it ran again (a measure, not a rule). */
export function measureOutageResume(model: RunModel): number[] {
  const outageResumeMs: number[] = [];
  for (const o of model.outages) {
    if (!Number.isFinite(o.b)) continue;
    for (const list of model.runsByTask.values()) {
      const before = list.some((r) => r.works > 0 && r.firstWork <= o.a && r.lastWork >= o.a - 1e9);
      if (!before) continue;
      let first = Number.POSITIVE_INFINITY;
      for (const r of list) {
        if (r.works === 0 || r.lastWork < o.b) continue;
        if (r.firstWork >= o.b) first = Math.min(first, r.firstWork);
        else first = Math.min(first, firstWorkAfter(r, o.b));
      }
      if (Number.isFinite(first)) outageResumeMs.push(ms(first - o.b));
    }
  }
  return outageResumeMs;
}

function firstWorkAfter(r: Run, t: number): number {
  for (const s of r.segments) if (s.b >= t) return Math.max(s.a, t);
  return Number.POSITIVE_INFINITY;
}

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stats, type CheckResult } from './checker/check-result.js';
import { loadRun } from './checker/run-model.js';
import { checkAtMostOnce } from './checker/rules/at-most-once.js';
import { checkEndState } from './checker/rules/end-state.js';
import { checkDeclarations } from './checker/rules/false-takeover.js';
import { checkHygiene } from './checker/rules/hygiene.js';
import { findLostTasks } from './checker/rules/lost.js';
import { findOverlaps } from './checker/rules/overlap.js';
import { checkTakeovers, measureOutageResume } from './checker/rules/takeover.js';
import { findTokenRegressions } from './checker/rules/tokens.js';
import { findWorkAfterStop } from './checker/rules/work-after-stop.js';
import { buildTimeline } from './checker/timeline.js';
import { ms } from './checker/time-axis.js';

export { stats, type CheckResult, type Stats, type TimelineModel, type Violation } from './checker/check-result.js';
export { scanTable, type TableSnapshot } from './checker/table-scan.js';

/**
 * The independent checker of a chaos run. It imports nothing from lib/ and nothing that runs
 * the harness: it reads the workers' audit logs and stderr, the harness's fault log, and the
 * final table (read with plain AWS SDK calls), and judges the run by the properties the
 * protocol promises:
 *
 * Safety
 *  - No overlap. For each task, every run (one process, one token, from its `start` line)
 *    has a working span [start, last work event of that run]. A `work` event of one run
 *    inside another run's span is a violation, with 0 ns tolerance. This is the same as
 *    "the spans of two runs that both did work intersect" (if they intersect, the run that
 *    started later either has its last work inside the earlier span, or the earlier one has
 *    its last work inside the later span). The span deliberately ends at the last work
 *    event, not at the `stop` line: a SIGSTOPped or SIGKILLed owner writes its `stop` late
 *    or never, and would otherwise "overlap" with every correct takeover.
 *  - Work of a run after that run's own `stop` line.
 *  - Fencing tokens: a `work` event with a lower token later (by mono_ns) than a `work`
 *    event with a higher token, for the same task; and a table token lower than a token
 *    already seen at work.
 * Liveness
 *  - Takeover time for every task of every failed node (SIGKILL, SIGSTOP, partition): from
 *    the fault to the first `start` of that task under a newer token, unless the victim had
 *    resumed the task under its own token before (then it kept the task, and the later move
 *    is a handover). p50/p99/max against the documented failover bound; a takeover that took
 *    longer than the bound, counting the same time as for lost tasks, is a violation.
 *  - Lost tasks: a stretch without any `work` event for the task that is longer than the
 *    bound plus one work interval, counting only time in which the store was up and
 *    answering within d (the harness's own probe) and at least one worker was live
 *    (running, not paused, not partitioned, not fenced by its own account).
 *  - End state: every task created exists once in the final table, ready, owned by a node
 *    that is alive there, and is at work on that owner with the table's token.
 *  - False takeovers: see `justify` in checker/rules/false-takeover.ts.
 *  - Finite tasks (`--finite-tasks`): each one's side effect (`effect` line) happens once, or
 *    again only after a fault of the node that did it first (checker/rules/at-most-once.ts);
 *    and each is done in the final table.
 * Hygiene: a worker that exited without the harness ending it, error-level log lines,
 * malformed audit lines, faults the harness had to skip.
 *
 * checker/run-model.ts reads a run directory once into a model; each rule in checker/rules/
 * judges that model and returns its violations; checkRun puts the verdicts together.
 */

export async function checkRun(dir: string): Promise<CheckResult> {
  const model = await loadRun(dir);
  const hygiene = checkHygiene(model);
  const takeovers = checkTakeovers(model);
  const declarations = checkDeclarations(model);
  const endState = checkEndState(model);
  const atMostOnce = checkAtMostOnce(model);
  const violations: CheckResult['violations'] = {
    overlaps: findOverlaps(model),
    workAfterStop: findWorkAfterStop(model),
    tokenRegressions: findTokenRegressions(model),
    slowTakeovers: takeovers.slow,
    lostTasks: [...findLostTasks(model), ...takeovers.notTakenOver],
    endState: endState.violations,
    falseTakeovers: declarations.falseTakeovers,
    unexpectedExits: hygiene.unexpectedExits,
    atMostOnce: atMostOnce.violations,
  };
  const { workerLogs, audit, run } = model;
  let runs = 0;
  for (const list of model.runsByTask.values()) runs += list.length;
  return {
    ok: Object.values(violations).every((list) => list.length === 0),
    run,
    phaseMs: ms(model.endNs),
    brownOutMs: ms(model.availability.brownOutNs),
    faults: { ...model.faultCounts },
    skipped: model.skipped,
    counts: { auditLines: audit.lines, runs, instances: model.instances.size, declarations: model.declarations.length, declaredWhileFenced: declarations.declaredWhileFenced, fenced: workerLogs.fenced, zombies: workerLogs.zombies, heartbeatFailures: workerLogs.heartbeatFailures },
    takeover: { ...stats(takeovers.takeoverMs), boundMs: run.boundMs, formulaBoundMs: model.formulaBoundMs, resumedInPlace: takeovers.resumedInPlace, byKind: Object.fromEntries(Object.entries(takeovers.byKind).map(([k, v]) => [k, stats(v)])) },
    handover: stats(takeovers.handoverMs),
    outageResume: stats(measureOutageResume(model)),
    detectionMs: stats(declarations.detectionMs),
    violations,
    finite: { tasks: model.finiteTasks.size, effects: atMostOnce.effects, repeated: atMostOnce.repeated },
    findings: [...hygiene.findings, ...endState.findings],
    proxies: { ...model.proxies },
    store: { restarts: stats(model.store.restartsMs), dataMb: model.store.dataBytes / 2 ** 20, slowMs: ms(model.availability.storeSlowNs) },
    timeline: buildTimeline(model, { declarations: declarations.marks, takeovers: takeovers.marks }),
  };
}

/** One line per rule: how many violations, and the first few. */
export function summarize(result: CheckResult, examples = 3): string[] {
  const lines: string[] = [];
  for (const [rule, list] of Object.entries(result.violations)) {
    lines.push(`${rule}: ${list.length}`);
    for (const v of list.slice(0, examples)) lines.push(`  - ${v.text.split('\n')[0]}`);
  }
  const t = result.takeover;
  lines.push(`takeover: ${t.count} tasks, p50 ${t.p50Ms.toFixed(0)} ms, p99 ${t.p99Ms.toFixed(0)} ms, max ${t.maxMs.toFixed(0)} ms (bound ${t.boundMs.toFixed(0)} ms)`);
  return lines;
}

// `tsx test/chaos/checker.ts <run dir>`: re-check a finished run from its files.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const target = process.argv[2];
  if (!target || process.argv.length > 3 || !existsSync(join(target, 'faults.jsonl'))) {
    process.stderr.write('usage: tsx test/chaos/checker.ts <run directory with faults.jsonl>\n');
    process.exit(2);
  }
  const result = await checkRun(target);
  writeFileSync(join(target, 'check.json'), `${JSON.stringify({ ...result, timeline: undefined }, null, 2)}\n`);
  // The report is the harness's; rewrite it when the harness left what it needs.
  if (existsSync(join(target, 'machine.json'))) {
    const { writeReport } = await import('./report.js');
    const { machine, timing } = JSON.parse(readFileSync(join(target, 'machine.json'), 'utf8')) as { machine: never; timing: never };
    writeReport(target, result, machine, timing);
  }
  for (const line of summarize(result)) process.stdout.write(`${line}\n`);
  for (const f of result.findings) process.stdout.write(`finding: ${f}\n`);
  process.exit(result.ok ? 0 : 1);
}

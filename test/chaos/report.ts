import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckResult, Stats, Violation } from './checker/check-result.js';
import { renderTimelineSvg } from './timeline-svg.js';

/** The Markdown summary of a run, next to its SVG timeline. Figures only; no adjectives. */
export interface MachineInfo {
  cpus: string;
  memoryGb: number;
  os: string;
  node: string;
  java: string;
  commit: string;
  loadBefore: string;
  loadAfter: string;
}

const s1 = (ms: number) => (ms / 1000).toFixed(2);

function row(name: string, st: Stats, bound?: number): string {
  if (st.count === 0) return `| ${name} | 0 | - | - | - | ${bound !== undefined ? s1(bound) : '-'} |`;
  return `| ${name} | ${st.count} | ${s1(st.p50Ms)} | ${s1(st.p99Ms)} | ${s1(st.maxMs)} | ${bound !== undefined ? s1(bound) : '-'} |`;
}

const ruleNames: Record<keyof CheckResult['violations'], string> = {
  overlaps: 'overlapping execution of one task (0 ms tolerance)',
  workAfterStop: 'work of a run after its own stop',
  tokenRegressions: 'fencing-token regressions (log order, and table vs log)',
  slowTakeovers: 'takeovers slower than the failover bound',
  lostTasks: 'lost tasks (no work for longer than bound + one work interval while the cluster could act)',
  endState: 'end state (tasks created vs final table; owner alive and running it)',
  falseTakeovers: 'false takeovers (declared dead without a fault of its own)',
  unexpectedExits: 'workers that exited on their own',
  atMostOnce: 'finite tasks: side effect repeated without a fault of the node that did it first, or never completed',
};

export const faultDescriptions: Record<string, string> = {
  kill: 'SIGKILL of a worker process; a new worker (fresh node id, or the victim\'s id) starts 0.2-1.2 bounds later',
  pause: 'SIGSTOP for 1.05-1.4 failover bounds, then SIGCONT (the zombie case)',
  stall: 'SIGSTOP for 5-100 % of the longest stall after which the next heartbeat still lands before anyone may declare the node (earliest declaration - (P + d) * f: about 0.8 s at P = 1 s): what a handler that blocks the event loop does; the node may fence itself, but must never be declared dead',
  partition: 'the worker\'s proxy blackholes every request for 0.3-1.3 bounds; the worker keeps running',
  clock: 'a worker process started with its protocol clock hours off (either direction) and running at 1/f, f or in between',
  outage: 'DynamoDB Local stopped for 1.05-1.25 bounds, restarted on the same data directory and port',
  net: 'for 0.5-1.5 bounds, 2-10 % each of throttling, 5xx and applied-but-lost replies on a subset of the proxies, with Amazon DynamoDB\'s behaviours on top (keys of batch reads left unprocessed, per-partition write throttling, index lag, lost transactions kept in progress)',
  term: 'SIGTERM (graceful leave) under load; a replacement starts 0.2-1.2 bounds later',
  'stubborn-term': 'SIGTERM to a worker some of whose demo handlers ignore their signal on a leave; it hands the others over, gives up after a short leave timeout, and failover takes the stuck tasks',
};

export function renderMarkdown(check: CheckResult, machine: MachineInfo, timing: { totalMs: number; checkMs: number }, svgName = 'timeline.svg'): string {
  const r = check.run;
  const st = r.settings;
  const lines: string[] = [];
  const violationCount = Object.values(check.violations).reduce((n, list) => n + list.length, 0);
  lines.push(`# Chaos run: seed ${r.seed}, ${r.workers} workers, ${r.tasks} tasks, ${r.seconds} s: ${check.ok ? 'no violations' : `${violationCount} violations`}`);
  lines.push('');
  lines.push(`Command: \`npm run chaos -- --seconds ${r.seconds} --workers ${r.workers} --tasks ${r.tasks} --seed ${r.seed} --faults ${r.faultsPerKind} --period-ms ${st.periodMs} --request-timeout-ms ${st.requestTimeoutMs}${r.finiteTasks ? ` --finite-tasks ${r.finiteTasks}` : ''}${r.kinds ? ` --kinds ${r.kinds.join(',')}` : ''}\``);
  if (check.finite.tasks > 0) lines.push('', `Finite tasks: ${check.finite.tasks}, side effects ${check.finite.effects}, of them ${check.finite.repeated} repeats (each excused by a fault of the node that did it first, or counted under the at-most-once rule).`);
  lines.push('');
  lines.push(`- Fault phase ${s1(check.phaseMs)} s; whole run ${s1(timing.totalMs)} s including start-up and teardown; the checker took ${s1(timing.checkMs)} s.`);
  lines.push(`- Protocol settings: P = ${st.periodMs} ms, K = ${st.staleTicks}, f = ${st.driftBound}, d = ${st.requestTimeoutMs} ms, c = ${st.handlerStopMs} ms, F = ${st.fenceMs} ms.`);
  lines.push(`- Failover bound d + (K+3)Pf = ${s1(r.boundMs)} s, plus (ceil(n/100) + ceil(n/32))·d for a victim holding n tasks; earliest declaration (K-1)P/f = ${s1(r.earliestDeclarationMs)} s after a node's last heartbeat.`);
  lines.push(`- Machine: ${machine.cpus}, ${machine.memoryGb} GB, ${machine.os}; Node ${machine.node}; ${machine.java}; commit ${machine.commit}; load average ${machine.loadBefore} before, ${machine.loadAfter} after.`);
  lines.push('');
  lines.push('## Verdict');
  lines.push('');
  lines.push('| check | violations |');
  lines.push('|---|---|');
  for (const [key, name] of Object.entries(ruleNames)) lines.push(`| ${name} | ${check.violations[key as keyof CheckResult['violations']].length} |`);
  lines.push('');
  lines.push('## Takeover and recovery times (seconds)');
  lines.push('');
  lines.push('| measure | samples | p50 | p99 | max | bound |');
  lines.push('|---|---|---|---|---|---|');
  lines.push(row('takeover: fault -> first start of the task under a newer token (all failures)', check.takeover, r.boundMs));
  for (const [kind, stats] of Object.entries(check.takeover.byKind)) lines.push(row(`  after ${kind}`, stats, r.boundMs));
  lines.push(row('handover on SIGTERM: signal -> start elsewhere', check.handover));
  lines.push(row('store outage: store back -> task at work again', check.outageResume));
  lines.push(row('detection: fault -> declared dead', check.detectionMs));
  lines.push('');
  lines.push(`Tasks of a failed node that were not taken over because the node itself resumed them (a partition healed before anyone could declare it dead): ${check.takeover.resumedInPlace}.`);
  lines.push('');
  lines.push('## Faults injected');
  lines.push('');
  lines.push('| kind | count | what the harness does |');
  lines.push('|---|---|---|');
  for (const [kind, text] of Object.entries(faultDescriptions)) {
    // An opt-in kind only where the run asked for it: a default run's report reads as before.
    if (kind === 'stubborn-term' && !check.run.kinds?.includes(kind)) continue;
    lines.push(`| ${kind} | ${check.faults[kind] ?? 0} | ${text} |`);
  }
  if (check.skipped > 0) lines.push(`\n${check.skipped} planned faults were skipped (their target was not running).`);
  lines.push('');
  lines.push('## Activity');
  lines.push('');
  const c = check.counts;
  const p = check.proxies;
  lines.push(`- ${c.instances} worker processes, ${c.auditLines} audit lines, ${c.runs} task runs.`);
  lines.push(`- ${c.declarations} declarations of death, ${c.declaredWhileFenced} of them of a node that had fenced itself without an injected fault (its own requests were failing: a brown-out, not a false takeover); ${c.fenced} self-fencings, ${c.zombies} zombie rejoins, ${c.heartbeatFailures} failed heartbeats logged.`);
  lines.push(`- Store slower than d = ${st.requestTimeoutMs} ms (the harness's own reads, outages aside): ${s1(check.store.slowMs)} s; every worker fenced with the store up: ${s1(check.brownOutMs)} s. Neither is counted against lost tasks or takeover times.`);
  const st2 = check.store.restarts;
  if (st2.count > 0) lines.push(`- DynamoDB Local restarts: ${st2.count}, p50 ${s1(st2.p50Ms)} s, max ${s1(st2.maxMs)} s; its data grew to ${check.store.dataMb.toFixed(1)} MB.`);
  lines.push(`- Proxies: ${p.requests} requests; ${p.blackholed} blackholed, ${p.throttled} throttled, ${p.errors500} answered 5xx, ${p.droppedReplies} replies dropped after the write was applied.`);
  lines.push('');
  lines.push('## Timeline');
  lines.push('');
  lines.push(`![timeline](${svgName})`);
  lines.push('');
  const listed = (title: string, items: Array<Violation | string>) => {
    if (items.length === 0) return;
    lines.push(`## ${title}`);
    lines.push('');
    for (const v of items.slice(0, 30)) {
      const text = typeof v === 'string' ? v : `${v.rule}: ${v.text}`;
      const [first, ...rest] = text.split('\n');
      lines.push(`- ${first}`);
      if (rest.length > 0) lines.push('', '  ```', ...rest.map((l) => `  ${l}`), '  ```', '');
    }
    if (items.length > 30) lines.push(`- ... and ${items.length - 30} more`);
    lines.push('');
  };
  for (const [key, name] of Object.entries(ruleNames)) listed(`Violations: ${name}`, check.violations[key as keyof CheckResult['violations']]);
  listed('Findings', check.findings);
  return `${lines.join('\n')}\n`;
}

export function writeReport(dir: string, check: CheckResult, machine: MachineInfo, timing: { totalMs: number; checkMs: number }): { reportPath: string; svgPath: string } {
  const svgPath = join(dir, 'timeline.svg');
  const reportPath = join(dir, 'report.md');
  const title = `keeper chaos run, seed ${check.run.seed}: ${check.run.workers} workers, ${check.run.tasks} tasks, bound ${s1(check.run.boundMs)} s`;
  writeFileSync(svgPath, renderTimelineSvg(check.timeline, title));
  writeFileSync(reportPath, renderMarkdown(check, machine, timing));
  writeFileSync(join(dir, 'check.json'), `${JSON.stringify({ ...check, timeline: undefined }, null, 2)}\n`);
  return { reportPath, svgPath };
}

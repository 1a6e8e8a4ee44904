import type { SectionReport } from './context.js';
import type { LoadSample, MachineInfo } from './machine.js';
import { table } from './report.js';

/** reports/bench.md: machine, method, headline figures, then one section per scenario. */
export interface RunRecord {
  machine: MachineInfo;
  startedAt: Date;
  finishedAt: Date;
  quick: boolean;
  only: string[];
  seed: number;
  sections: SectionReport[];
  loads: Array<{ scenario: string; load: LoadSample }>;
  endpoint: string;
  code: string;
}

export function machineTable(m: MachineInfo): string {
  return table(
    ['CPU', 'cores', 'memory', 'Node.js', 'Java', 'DynamoDB Local', 'kernel'],
    [[m.cpuModel, String(m.cores), `${m.memoryGiB} GiB`, m.node, m.java, m.dynamoDbLocal, m.kernel]],
  );
}

export function headlineTable(sections: readonly SectionReport[]): string {
  const rows = sections.flatMap((s) => s.headline).map((h) => [h.figure, h.keeper, h.baseline, h.ratio, h.target, h.verdict]);
  return table(['figure', 'keeper (median / p99)', 'lock per task (median / p99)', 'baseline / keeper', 'issue target (keeper)', 'keeper'], rows);
}

/**
 * The README's "## Benchmarks" section: headline table, charts (as committed under
 * docs/bench/), machine and command. Written to reports/readme-benchmarks.md for pasting.
 */
export function renderReadmeSection(run: RunRecord, chartDir = 'docs/bench'): string {
  const m = run.machine;
  const out: string[] = [];
  out.push('## Benchmarks', '');
  out.push(
    `keeper against a lock per task (\`dynamodb-lock-client\` 0.7.3, the settings of its README: FailOpen, 10 s lease, 3 s heartbeat) doing the same work, in the same run, against the same DynamoDB Local. Medians / p99 over repeated trials (p99 is nearest-rank: with fewer than 100 trials, the slowest trial). "Saturated" means DynamoDB Local on this machine could not serve that system at that size; the report gives the evidence and, where possible, the figure at a smaller size.`,
    '',
    headlineTable(run.sections),
    '',
  );
  for (const s of run.sections) for (const c of s.charts) out.push(`![${c.title}](${chartDir}/${c.file})`, '');
  out.push(
    `Measured at ${run.code}. Machine: ${m.cores} x ${m.cpuModel}, ${m.memoryGiB} GiB, Node.js ${m.node}, Java ${m.java}, DynamoDB Local ${m.dynamoDbLocal} (in memory), shared with other test suites (load average ${run.loads.map((l) => l.load.loadavg1).join(', ')} at the start of each scenario). Full report with method, per-purpose request counts, health counters and noise: [${chartDir}/report.md](${chartDir}/report.md).`,
    '',
    'Reproduce (about 70 minutes on two cores; starts and stops its own DynamoDB Local, needs Java 17+):',
    '',
    '```sh',
    'npm ci && npm run build && npm run bench          # writes reports/bench.md and the charts',
    'npm run bench -- --quick                         # smoke run, a few minutes',
    'npm run bench -- --only crash,leave              # crash | leave | cost | scale | memory',
    '```',
    '',
  );
  return out.join('\n');
}

export function renderReport(run: RunRecord): { markdown: string } {
  const command = `npm run bench${run.quick || run.only.length < 5 ? ` --${run.quick ? ' --quick' : ''}${run.only.length < 5 ? ` --only ${run.only.join(',')}` : ''}` : ''}`;
  const minutes = ((run.finishedAt.getTime() - run.startedAt.getTime()) / 60_000).toFixed(1);
  const out: string[] = [];
  out.push('# keeper benchmark report', '');
  out.push(`Command: \`${command}\` (seed ${run.seed}), measuring keeper at ${run.code}. Run ${run.startedAt.toISOString()} .. ${run.finishedAt.toISOString()} (${minutes} min)${run.quick ? ' — **quick smoke run: few trials, small sizes; not for quoting**' : ''}.`, '');
  out.push('## Machine', '', machineTable(run.machine), '');
  out.push(
    'Load average (1 min) and other processes competing for the same cores when each scenario started ' +
      '(another DynamoDB Local or test runner means other engineers\' suites were running: the figures below include that noise):',
    '',
    table(['scenario', 'load average', 'other DynamoDB Locals', 'other test runners / workers'], run.loads.map((l) => [l.scenario, String(l.load.loadavg1), String(l.load.foreign.dynamoDbLocals), String(l.load.foreign.testRunners)])),
    '',
  );
  out.push(
    '## Method',
    '',
    '- Both systems run against one DynamoDB Local (in memory, started by the bench), each on its own tables, one system at a time; every scenario runs keeper\'s trials and then the baseline\'s, back to back.',
    '- Many nodes run in this one process, each with its own DynamoDB client (own connection pool and timeouts), as separate processes would. The memory figure comes from a real `node bin/keeper.js worker` process instead.',
    '- Every figure is the median and the p99 over repeated trials. p99 is nearest-rank: with fewer than 100 trials it is the largest trial, never an interpolation.',
    '- Baseline: one lease lock per task with `dynamodb-lock-client` 0.7.3 (FailOpen, leaseDurationMs 10 000, heartbeatPeriodMs 3 000, default retryCount and trustLocalTime), through a v2-style callback adapter over lib-dynamodb v3, so both systems use the same SDK stack and the same counting middleware. Worker design: bench/lock-worker.ts (capacity ceil(tasks / workers) x 1.2; an acquire attempt outstanding for every task not held while below capacity; first attempts spread over one lease; a failed heartbeat is a lost lease; a crash stops all activity without releasing).',
    '- Capacity units: a middleware on every client sets `ReturnConsumedCapacity: TOTAL` (table plus indexes) and adds up what DynamoDB Local returns, per operation and purpose. DynamoDB Local, like DynamoDB, returns nothing for a write whose condition failed, although DynamoDB bills it: those units are computed from the size of the item the condition was checked against (1 WCU per KB, at least 1; the item comes back with ReturnValuesOnConditionCheckFailure, or, for a put without it, the item sent). Requests that failed otherwise (timeouts) are counted as requests and errors, without units.',
    '- Saturation: when DynamoDB Local cannot keep up (heartbeats failing or late, locks lost, tasks not all running within the time box), the report says "saturated" and gives the evidence instead of a figure.',
    '',
  );
  if (run.sections.length > 0) out.push('## Headline figures', '', headlineTable(run.sections), '');
  for (const s of run.sections) {
    out.push(`## ${s.title}`, '', s.body, '');
    for (const c of s.charts) out.push(`![${c.title}](${c.file})`, '');
  }
  return { markdown: `${out.join('\n')}\n` };
}

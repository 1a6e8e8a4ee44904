import { resolveConfig, type KeeperOptions } from '../../lib/config.js';
import { colors, dotPlot } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { KeeperFleet, LockFleet } from '../fleet.js';
import { medianP99, ratio, seconds, table, verdict } from '../report.js';
import { summarize } from '../stats.js';
import { feedRate, taskIds } from '../tables.js';
import { waitForIdle } from '../machine.js';
import { baselineCell, censoredCount, churnTrials, completed, healthTable, measured, saturationNotes, victimTasks, type Series } from './churn-trials.js';

/**
 * Scenario 2, graceful leave: a node holding about 100 tasks calls stop() (what SIGTERM does);
 * the time from the call until all of its tasks run elsewhere. keeper at default settings
 * (receivers rung over UDP), without the doorbell (receivers notice at their next heartbeat),
 * and without it but with inboxPollMs 100 (a cheap eventually consistent inbox read between
 * heartbeats); the baseline releases its locks (FailOpen release: lease 1 ms).
 */
const targetMs = 300;

export interface LeaveData {
  targetMs: number;
  periodMs?: number;
  series: Series[];
}

export async function measureLeave(ctx: BenchContext): Promise<LeaveData> {
  const nodes = 10;
  const taskCount = ctx.quick ? 200 : 1000;
  const trials = ctx.quick ? 3 : 20;
  const fallbackTasks = ctx.quick ? 100 : 200;
  const fallbackTrials = ctx.quick ? 2 : 10;
  const tasks = taskIds(taskCount);
  const churn = { action: 'stop' as const, nodes, quietMs: 2000, quietCapMs: 3000, settleTimeoutMs: 90_000, probeMs: 10_000 };
  const configs: Array<{ label: string; settings: KeeperOptions }> = [
    { label: 'keeper, defaults', settings: {} },
    { label: 'keeper, no doorbell', settings: { doorbell: false } },
    { label: 'keeper, no doorbell, inboxPollMs 100', settings: { doorbell: false, inboxPollMs: 100 } },
  ];
  ctx.log(`graceful leave: ${nodes} nodes, ${taskCount} tasks, ${trials} trials per series`);
  const keeper: Series[] = [];
  for (const { label, settings } of configs) {
    const table = await ctx.tables.keeperTable('leave-keeper', []);
    keeper.push(await churnTrials(ctx, new KeeperFleet(ctx.endpoint, table, tasks, settings), { ...churn, label, trials, feed: () => ctx.tables.feedTasks(table, tasks, feedRate) }));
    await ctx.tables.drop(table);
  }
  const baselineRun = async (count: number, runTrials: number, settleTimeoutMs: number) => {
    const ids = taskIds(count);
    const lockTable = await ctx.tables.lockTable('leave-lock');
    const series = await churnTrials(ctx, new LockFleet(ctx.endpoint, lockTable, ids, LockFleet.capacityFor(count, nodes), ctx.random), { ...churn, label: 'lock per task (release)', trials: runTrials, settleTimeoutMs });
    await ctx.tables.drop(lockTable);
    if (series.saturated) await waitForIdle(ctx.dbPid);
    return series;
  };
  const baselinePrimary = await baselineRun(taskCount, trials, 45_000);
  const baselineFallback = baselinePrimary.saturated ? await baselineRun(fallbackTasks, fallbackTrials, 90_000) : undefined;
  return { targetMs, periodMs: resolveConfig({}).periodMs, series: [...keeper, baselinePrimary, ...(baselineFallback ? [baselineFallback] : [])] };
}

/** The report section, from measured (or recorded) data alone. */
export function renderLeave(data: LeaveData): SectionReport {
  const { targetMs } = data;
  const all = data.series;
  const keeper = all.filter((s) => s.system === 'keeper');
  const taskCount = keeper[0]!.tasks;
  const baselinePrimary = all.find((s) => s.system === 'baseline' && s.tasks === taskCount)!;
  const baselineFallback = all.find((s) => s.system === 'baseline' && s.tasks !== taskCount);
  const baseline = measured(baselinePrimary, baselineFallback);
  const sum = (s: Series) => summarize(completed(s));
  const meets = (s: Series) => (completed(s).length === 0 ? undefined : censoredCount(s) === 0 && sum(s).p99 <= targetMs);
  const rows = all.filter((s) => !s.saturated).map((s) => [
    s.label,
    s.tasks.toLocaleString('en-US'),
    `${s.trials.length}${censoredCount(s) ? ` (${censoredCount(s)} did not finish)` : ''}`,
    String(victimTasks(s)),
    medianP99(summarize(s.trials.flatMap((t) => (t.firstMs === undefined ? [] : [t.firstMs]))), seconds),
    medianP99(sum(s), seconds),
    `${seconds(sum(s).min)} .. ${seconds(sum(s).max)}`,
    s.system === 'keeper' ? `${verdict(meets(s))} (p99 <= ${targetMs} ms)` : '-',
  ]);
  const periodMs = data.periodMs ?? resolveConfig({}).periodMs;
  const body = [
    `The leaving node is the one whose task count is closest to the mean; the call to stop() comes at a uniformly random phase of the system's cycle. Times run from the call to the handler start of its last task on another node. keeper hands the tasks straight to live peers (no detection wait), notifies them in the table and rings their doorbells (UDP) with the task ids; a receiver starts them when the ring arrives, and without a doorbell at its next heartbeat (P = ${seconds(periodMs)}) or, with inboxPollMs, at its next inbox poll. The baseline releases every lock (FailOpen: the item stays, with a 1 ms lease); waiting acquirers notice when their lease-long wait ends.`,
    '',
    table(['series', 'tasks', 'trials', 'tasks on the leaving node (median)', 'first task (median / p99)', 'all tasks (median / p99)', 'min .. max', 'issue target'], rows),
    '',
    saturationNotes(all),
    baseline
      ? `Ratio baseline / keeper (medians): ${keeper.map((s) => `${ratio(sum(baseline).median, sum(s).median)} (${s.label.replace('keeper, ', '')})`).join(', ')}${baseline !== baselinePrimary ? ` (baseline at ${baseline.tasks} tasks, ~${victimTasks(baseline)} on the leaving node, against keeper at ${taskCount}: fewer tasks favour the baseline)` : ''}.`
      : 'No baseline figure: saturated.',
    '',
    healthTable(all),
  ].join('\n');
  const chart = dotPlot({
    title: `Graceful leave: stop() -> all of its ~${victimTasks(keeper[0]!)} tasks run elsewhere`,
    unit: 'time, log scale',
    log: true,
    format: (v) => (v < 1000 ? `${v} ms` : `${v / 1000} s`),
    series: [
      ...keeper.map((s, i) => ({ label: s.label, values: completed(s), censored: censoredCount(s), color: [colors.keeper, colors.keeperAlt, colors.keeperThird][i % 3]! })),
      ...(baseline ? [{ label: `lock per task (release), ~${victimTasks(baseline)} tasks`, values: completed(baseline), censored: censoredCount(baseline), color: colors.baseline }] : []),
    ],
    markers: [{ value: targetMs, label: `issue target ${targetMs} ms` }],
  });
  const misses = keeper
    .filter((s) => meets(s) === false || s.saturated)
    .map((s) => `Graceful leave (${s.label}, ~${victimTasks(s)} tasks): p99 ${seconds(sum(s).p99)} (median ${seconds(sum(s).median)}${censoredCount(s) ? `, ${censoredCount(s)} trials did not finish` : ''}) against the issue target p99 <= ${targetMs} ms.`);
  return {
    id: 'leave',
    title: '2. Graceful leave',
    body,
    charts: [{ file: 'bench-graceful-leave.svg', title: 'Graceful leave', svg: chart }],
    headline: keeper.map((s) => ({
      figure: `Graceful leave, ~${victimTasks(s)} tasks (${s.label.replace('keeper, ', '')})`,
      keeper: medianP99(sum(s), seconds),
      baseline: baselineCell(baselinePrimary, baselineFallback, (b) => medianP99(sum(b), seconds)),
      ratio: baseline ? ratio(sum(baseline).median, sum(s).median) : 'n/a',
      target: `p99 <= ${targetMs} ms`,
      verdict: verdict(meets(s)),
    })),
    misses,
    data,
  };
}

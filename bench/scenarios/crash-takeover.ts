import { failoverBoundMs, resolveConfig } from '../../lib/config.js';
import { colors, dotPlot, type DotSeries } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { KeeperFleet, LockFleet, saturationEvidence, type Fleet } from '../fleet.js';
import { lockSettings } from '../lock-worker.js';
import { CpuWatch, loadSample, waitForIdle } from '../machine.js';
import { medianP99, ratio, seconds, table, verdict } from '../report.js';
import { sleepMs, waitUntil } from '../run-ledger.js';
import { summarize } from '../stats.js';
import { feedRate, taskIds } from '../tables.js';
import { baselineCell, censoredCount, healthDelta, churnTrials, completed, healthTable, measured, saturationNotes, victimTasks, type Series, type Trial } from './churn-trials.js';

/**
 * Scenario 1, crash takeover: 10 nodes and 1,000 tasks, one node killed without telling
 * anyone; the time from the kill until every one of its tasks has started on another node.
 * Variant: the killed node holds every task (it starts alone and claims all; nine more join
 * with maxMovesPerTick 0, so nothing moves before the kill).
 *
 * The baseline offers the store about two requests per second per task (an acquire cycle of
 * four requests per 20 s for each of nine waiting workers, plus a heartbeat every 3 s). Where
 * the store cannot serve that, the series is reported as saturated, with the evidence, and
 * repeated at a smaller size so there is still a takeover time to compare with.
 */
export interface CrashData {
  nodes: number;
  target: number;
  bound: number;
  /** keeper's settings in the text (recorded so a later rendering does not assume today's defaults). */
  config?: { periodMs: number; staleTicks: number; driftBound: number; requestTimeoutMs: number };
  series: Series[];
}

export async function measureCrash(ctx: BenchContext): Promise<CrashData> {
  const nodes = 10;
  const taskCount = ctx.quick ? 200 : 1000;
  const trials = ctx.quick ? 3 : 20;
  const soloTrials = ctx.quick ? 2 : 10;
  const fallbackTasks = ctx.quick ? 100 : 200;
  const fallbackTrials = ctx.quick ? 2 : 10;
  const fallbackSoloTrials = ctx.quick ? 2 : 5;
  const config = resolveConfig({});
  const threshold = (config.staleTicks + 1) * config.periodMs;
  const target = threshold + config.periodMs + 300;
  const bound = failoverBoundMs(config);
  const churn = { action: 'kill' as const, nodes, quietMs: 2000, quietCapMs: 3000, settleTimeoutMs: 90_000, probeMs: 10_000 };

  ctx.log(`crash takeover: ${nodes} nodes, ${taskCount} tasks, ${trials} trials per system`);
  const keeper = await keeperChurn(ctx, taskCount, { ...churn, label: 'keeper', trials });
  // A fleet the store can serve holds every lock about one lease (the spread of first attempts) after its start.
  const baseline = await baselineChurn(ctx, taskCount, { ...churn, label: 'lock per task', trials, settleTimeoutMs: 45_000 });
  const baselineFallback = baseline.saturated ? await baselineChurn(ctx, fallbackTasks, { ...churn, label: 'lock per task', trials: fallbackTrials }) : undefined;

  ctx.log(`crash takeover, one node holds every task: ${soloTrials} trials per system`);
  const keeperSolo = await soloSeries(ctx, 'keeper', taskCount, soloTrials);
  const baselineSolo = await soloSeries(ctx, 'baseline', taskCount, soloTrials);
  const baselineSoloFallback = baselineSolo.saturated ? await soloSeries(ctx, 'baseline', fallbackTasks, fallbackSoloTrials) : undefined;
  const series = [keeper, baseline, baselineFallback, keeperSolo, baselineSolo, baselineSoloFallback].filter((s): s is Series => s !== undefined);
  const { periodMs, staleTicks, driftBound, requestTimeoutMs } = config;
  return { nodes, target, bound, config: { periodMs, staleTicks, driftBound, requestTimeoutMs }, series };
}

const holdsAll = (s: Series) => s.label.includes('holds all');

/** The report section, from measured (or recorded) data alone. */
export function renderCrash(data: CrashData): SectionReport {
  const { nodes, target, bound } = data;
  const config = data.config ?? resolveConfig({});
  const all = data.series;
  const keeper = all.find((s) => s.system === 'keeper' && !holdsAll(s))!;
  const keeperSolo = all.find((s) => s.system === 'keeper' && holdsAll(s))!;
  const taskCount = keeper.tasks;
  const baseline = all.find((s) => s.system === 'baseline' && !holdsAll(s) && s.tasks === taskCount)!;
  const baselineFallback = all.find((s) => s.system === 'baseline' && !holdsAll(s) && s.tasks !== taskCount);
  const baselineSolo = all.find((s) => s.system === 'baseline' && holdsAll(s) && s.tasks === taskCount)!;
  const baselineSoloFallback = all.find((s) => s.system === 'baseline' && holdsAll(s) && s.tasks !== taskCount);
  const sum = (s: Series) => summarize(completed(s));
  const meets = (s: Series, limit: number) => (completed(s).length === 0 ? undefined : censoredCount(s) === 0 && sum(s).p99 <= limit);
  const stat = (s: Series, pick: (t: Trial) => number | undefined) => summarize(s.trials.flatMap((t) => { const v = pick(t); return v === undefined ? [] : [v]; }));

  const rows = all.filter((s) => !s.saturated).map((s) => [
    s.label,
    s.tasks.toLocaleString('en-US'),
    `${s.trials.length}${censoredCount(s) ? ` (${censoredCount(s)} did not finish)` : ''}`,
    String(victimTasks(s)),
    s.system === 'keeper' ? medianP99(stat(s, (t) => t.detectionMs), seconds) : '-',
    medianP99(stat(s, (t) => t.firstMs), seconds),
    medianP99(sum(s), seconds),
    `${seconds(sum(s).min)} .. ${seconds(sum(s).max)}`,
    s.system === 'keeper' ? `target ${verdict(meets(s, target))}, bound ${verdict(meets(s, bound))}` : '-',
  ]);
  const base = measured(baseline, baselineFallback);
  const baseSolo = measured(baselineSolo, baselineSoloFallback);
  const body = [
    `Victim: the node whose task count is closest to the mean (a typical node). Kills are placed at a uniformly random phase of each system's cycle (keeper: one period, ${seconds(config.periodMs)}; baseline: one lease, ${seconds(lockSettings.leaseDurationMs)}). Times run from the kill to the *handler start* of the victim's last task on another node ("first": its first task). One long-running cluster per system: after each trial a replacement node joins, and the next kill waits until every task runs on exactly one node and no handler has started for 2 s, or until 99 % of the tasks have run on exactly one node for 3 s (keeper keeps diffusing a few tasks a period towards the newcomer for 10-20 s; a kill during that is what production sees). The variant starts a fresh table each trial. keeper's tasks are added to the running cluster at ${feedRate} per second (an operator adding tasks); all at once, DynamoDB Local here saturates under the claims (docs/bench-findings.md).`,
    '',
    `keeper at default settings: P = ${config.periodMs} ms, K = ${config.staleTicks}, f = ${config.driftBound}, d = ${config.requestTimeoutMs} ms. Issue target: p99 <= (K + 1) P + P + 300 ms = ${seconds(target)}. README failover bound: failoverBoundMs = ${seconds(bound)}.`,
    '',
    table(['series', 'tasks', 'trials', 'victim tasks (median)', 'detection (median / p99)', 'first task (median / p99)', 'all tasks (median / p99)', 'min .. max', `keeper: target ${seconds(target)}, bound ${seconds(bound)}`], rows),
    '',
    saturationNotes(all),
    `Ratio baseline / keeper (medians, all tasks): ${base ? `${ratio(sum(base).median, sum(keeper).median)}${base !== baseline ? ` (baseline at ${base.tasks} tasks, ~${victimTasks(base)} on its victim, against keeper at ${keeper.tasks}, ~${victimTasks(keeper)} on its victim: a smaller victim favours the baseline, whose time is the latest of its tasks)` : ''}` : 'n/a'}; one node holding every task: ${baseSolo ? `${ratio(sum(baseSolo).median, sum(keeperSolo).median)}${baseSolo !== baselineSolo ? ` (baseline holding ${baseSolo.tasks}, keeper ${keeperSolo.tasks})` : ''}` : 'n/a'}.`,
    '',
    healthTable(all),
  ].join('\n');

  const dot = (s: Series | undefined, color: string): DotSeries[] =>
    s && !s.saturated ? [{ label: `${s.system === 'keeper' ? 'keeper' : 'lock per task'}, ${s.label.includes('holds') ? `${s.tasks} on victim` : `~${victimTasks(s)} of ${s.tasks} on victim`}`, values: completed(s), censored: censoredCount(s), color }] : [];
  const chart = dotPlot({
    title: `Crash takeover: kill -> all of the dead node's tasks run elsewhere (${nodes} nodes)`,
    unit: 'seconds',
    format: (v) => `${v / 1000}`,
    series: [...dot(keeper, colors.keeper), ...dot(keeperSolo, colors.keeperAlt), ...dot(base, colors.baseline), ...dot(baseSolo, colors.baselineAlt)],
    markers: [
      { value: target, label: `issue target ${seconds(target)}` },
      { value: bound, label: `failover bound ${seconds(bound)}` },
    ],
  });

  const misses: string[] = [];
  for (const s of [keeper, keeperSolo]) {
    if (s.saturated) misses.push(`Crash takeover (${s.label}): DynamoDB Local saturated: ${s.saturated.join('; ')}.`);
    if (meets(s, target) === false) misses.push(`Crash takeover (${s.label}, ${victimTasks(s)} tasks on the victim): p99 ${seconds(sum(s).p99)} (median ${seconds(sum(s).median)}${censoredCount(s) ? `, ${censoredCount(s)} trials did not finish` : ''}) against the issue target ${seconds(target)}; detection median / p99 ${medianP99(stat(s, (t) => t.detectionMs), seconds)}.`);
    if (meets(s, bound) === false) misses.push(`Crash takeover (${s.label}): p99 ${seconds(sum(s).p99)} exceeds failoverBoundMs = ${seconds(bound)}.`);
  }
  const fmt = (s: Series) => medianP99(sum(s), seconds);
  return {
    id: 'crash',
    title: '1. Crash takeover',
    body,
    charts: [{ file: 'bench-crash-takeover.svg', title: 'Crash takeover', svg: chart }],
    headline: [
      {
        figure: `Crash takeover, ${nodes} nodes, ${taskCount.toLocaleString('en-US')} tasks (~${victimTasks(keeper)} on the victim)`,
        keeper: fmt(keeper),
        baseline: baselineCell(baseline, baselineFallback, fmt),
        ratio: base ? ratio(sum(base).median, sum(keeper).median) : 'n/a',
        target: `p99 <= ${seconds(target)}`,
        verdict: verdict(meets(keeper, target)),
      },
      {
        figure: `Crash takeover, every task (${taskCount.toLocaleString('en-US')}) on the victim`,
        keeper: fmt(keeperSolo),
        baseline: baselineCell(baselineSolo, baselineSoloFallback, fmt),
        ratio: baseSolo ? ratio(sum(baseSolo).median, sum(keeperSolo).median) : 'n/a',
        target: `p99 <= ${seconds(target)}`,
        verdict: verdict(meets(keeperSolo, target)),
      },
    ],
    misses,
    data,
  };
}

type ChurnRun = Omit<Parameters<typeof churnTrials>[2], 'label'> & { label: string };

async function keeperChurn(ctx: BenchContext, taskCount: number, options: ChurnRun): Promise<Series> {
  const tasks = taskIds(taskCount);
  const table = await ctx.tables.keeperTable('crash-keeper', []);
  const series = await churnTrials(ctx, new KeeperFleet(ctx.endpoint, table, tasks, {}), { ...options, feed: () => ctx.tables.feedTasks(table, tasks, feedRate) });
  await ctx.tables.drop(table);
  return series;
}

async function baselineChurn(ctx: BenchContext, taskCount: number, options: ChurnRun): Promise<Series> {
  const tasks = taskIds(taskCount);
  const table = await ctx.tables.lockTable('crash-lock');
  const series = await churnTrials(ctx, new LockFleet(ctx.endpoint, table, tasks, LockFleet.capacityFor(taskCount, options.nodes), ctx.random), options);
  await ctx.tables.drop(table);
  // Whatever a saturated fleet left in flight drains before the next series.
  if (series.saturated) await waitForIdle(ctx.dbPid);
  return series;
}

/**
 * Variant trials: a fresh table each time; one node alone claims everything, nine join, the
 * first is killed. The wait before the kill doubles as a saturation probe: if the store
 * drops heartbeats while the nine are watching, the series stops there.
 */
async function soloSeries(ctx: BenchContext, system: 'keeper' | 'baseline', taskCount: number, trials: number): Promise<Series> {
  const label = `${system === 'keeper' ? 'keeper' : 'lock per task'}, one node holds all`;
  const load = loadSample(ctx.ownPids);
  const cpu = new CpuWatch([ctx.dbPid, process.pid]);
  const began = performance.now();
  const tasks = taskIds(taskCount);
  const results: Trial[] = [];
  const health: Record<string, number> = {};
  let overlaps = 0;
  let saturated: string[] | undefined;
  for (let t = 0; t < trials && !saturated; t++) {
    const table = system === 'keeper' ? await ctx.tables.keeperTable('solo-keeper', tasks) : await ctx.tables.lockTable('solo-lock');
    let fleet: Fleet;
    let join: () => Promise<void>;
    const solo = system === 'keeper' ? 'k0' : 'l0';
    if (system === 'keeper') {
      const keeper = new KeeperFleet(ctx.endpoint, table, tasks, { maxMovesPerTick: 0 });
      fleet = keeper;
      await keeper.start([solo]);
      join = () => keeper.start(Array.from({ length: 9 }, (_, i) => `k${i + 1}`));
    } else {
      const lock = new LockFleet(ctx.endpoint, table, tasks, taskCount, ctx.random);
      fleet = lock;
      // Alone it contends with nobody, so its first attempts need no spreading.
      lock.cluster.start([solo], taskCount, 0);
      join = async () => lock.cluster.start(Array.from({ length: 9 }, (_, i) => `l${i + 1}`), LockFleet.capacityFor(taskCount, 9));
    }
    const alone = await waitUntil(() => fleet.tasksOf(solo).length === taskCount, 90_000, 100);
    await join();
    // keeper: the joiners read their watched peers for three periods; baseline: the joiners'
    // first attempts are spread over one lease. Then a random phase of one cycle.
    const evidence = alone ? await saturationEvidence(fleet, system === 'keeper' ? 3 * fleet.cycleMs : lockSettings.leaseDurationMs) : [`the first node held ${fleet.tasksOf(solo).length} of ${taskCount} tasks after 90 s alone`];
    if (fleet.tasksOf(solo).length < taskCount) evidence.push(`the first node held ${fleet.tasksOf(solo).length} of ${taskCount} before the kill`);
    if (evidence.length > 0) {
      saturated = evidence;
      ctx.log(`  ${label}, ${taskCount} tasks: saturated (${evidence.join('; ')})`);
    } else {
      await sleepMs(ctx.random() * fleet.cycleMs);
      const lost = fleet.tasksOf(solo);
      const healthBefore = fleet.health();
      const at = await fleet.kill(solo);
      const done = await fleet.ledger.movedAway(lost, solo, at, fleet.takeoverTimeoutMs);
      const first = fleet.ledger.firstMoveAt(lost, solo, at);
      const trial: Trial = {
        victim: solo,
        tasks: lost.length,
        ms: done === undefined ? undefined : done - at,
        firstMs: first === undefined ? undefined : first - at,
        notMoved: done === undefined ? fleet.ledger.notMoved(lost, solo, at).length : 0,
        healthDuring: healthDelta(healthBefore, fleet.health()),
      };
      if (fleet instanceof KeeperFleet) {
        const declared = fleet.cluster.events.declarations.find((d) => d.node === solo && d.at >= at);
        if (declared) trial.detectionMs = declared.at - at;
      }
      results.push(trial);
      ctx.log(`  ${label} trial ${t + 1}/${trials}: ${trial.tasks} tasks, ${trial.ms === undefined ? `not all moved (${trial.notMoved} left)` : `${Math.round(trial.ms)} ms`}`);
    }
    for (const [k, v] of Object.entries(fleet.health())) health[k] = (health[k] ?? 0) + v;
    overlaps += fleet.ledger.overlaps;
    await fleet.close();
    await ctx.tables.drop(table);
    if (saturated) await waitForIdle(ctx.dbPid);
  }
  return { label, system, tasks: taskCount, trials: saturated ? [] : results, ...(saturated ? { saturated } : {}), health, overlaps, cpu: cpu.read(), load, wallMs: performance.now() - began };
}

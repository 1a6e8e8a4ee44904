import { failoverBoundMs, resolveConfig, type KeeperOptions } from '../../lib/config.js';
import { colors, dotPlot } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { KeeperFleet, LockFleet, type Fleet } from '../fleet.js';
import { lockSettings } from '../lock-worker.js';
import { CpuWatch, loadSample } from '../machine.js';
import { medianP99, ratio, seconds, table, verdict } from '../report.js';
import { sleepMs, waitUntil } from '../run-ledger.js';
import { summarize } from '../stats.js';
import { taskIds } from '../tables.js';
import { churnTrials, type Series, type Trial } from './churn-trials.js';

/**
 * Scenario 1, crash takeover: 10 nodes and 1,000 tasks, one node killed without telling
 * anyone; the time from the kill until every one of its tasks has started on another node.
 * Variant: the killed node holds every task (it starts alone and claims all; nine more join
 * with maxMovesPerTick 0, so nothing moves before the kill).
 */
const keeperDefaults: KeeperOptions = {};

export async function crashTakeover(ctx: BenchContext): Promise<SectionReport> {
  const nodes = 10;
  const taskCount = ctx.quick ? 200 : 1000;
  const trials = ctx.quick ? 3 : 20;
  const soloTrials = ctx.quick ? 2 : 10;
  const tasks = taskIds(taskCount);
  const config = resolveConfig(keeperDefaults);
  const threshold = (config.staleTicks + 1) * config.periodMs;
  const target = threshold + config.periodMs + 300;
  const bound = failoverBoundMs(config);

  ctx.log(`crash takeover: ${nodes} nodes, ${taskCount} tasks, ${trials} trials per system`);
  const keeperTable = await ctx.tables.keeperTable('crash-keeper', tasks);
  const keeper = await churnTrials(ctx, new KeeperFleet(ctx.endpoint, keeperTable, tasks, keeperDefaults), {
    label: 'keeper', action: 'kill', nodes, trials, quietMs: 2000, settleTimeoutMs: 120_000,
  });
  await ctx.tables.drop(keeperTable);
  const lockTable = await ctx.tables.lockTable('crash-lock');
  const baseline = await churnTrials(ctx, new LockFleet(ctx.endpoint, lockTable, tasks, LockFleet.capacityFor(taskCount, nodes), ctx.random), {
    label: 'baseline', action: 'kill', nodes, trials, quietMs: 2000, settleTimeoutMs: 120_000,
  });
  await ctx.tables.drop(lockTable);

  ctx.log(`crash takeover, one node holds all ${taskCount}: ${soloTrials} trials per system`);
  const keeperSolo = await soloSeries(ctx, 'keeper', taskCount, soloTrials);
  const baselineSolo = await soloSeries(ctx, 'baseline', taskCount, soloTrials);

  const all = [keeper, baseline, keeperSolo, baselineSolo];
  const done = (s: Series) => s.trials.flatMap((t) => (t.ms === undefined ? [] : [t.ms]));
  const sum = (s: Series) => summarize(done(s));
  const censored = (s: Series) => s.trials.filter((t) => t.ms === undefined).length;
  const meets = (s: Series, limit: number) => (done(s).length === 0 ? undefined : censored(s) === 0 && sum(s).p99 <= limit);

  const rows = all.map((s) => {
    const k = sum(s);
    const victims = summarize(s.trials.map((t) => t.tasks));
    const detection = summarize(s.trials.flatMap((t) => (t.detectionMs === undefined ? [] : [t.detectionMs])));
    const first = summarize(s.trials.flatMap((t) => (t.firstMs === undefined ? [] : [t.firstMs])));
    return [
      s.label,
      `${s.trials.length}${censored(s) ? ` (${censored(s)} did not finish)` : ''}`,
      String(Math.round(victims.median)),
      detection.n ? medianP99(detection, seconds) : '-',
      medianP99(first, seconds),
      medianP99(k, seconds),
      `${seconds(k.min)} .. ${seconds(k.max)}`,
      s.system === 'keeper' ? `${verdict(meets(s, target))} (${seconds(target)}); bound ${verdict(meets(s, bound))} (${seconds(bound)})` : '-',
    ];
  });
  const healthRows = all.map((s) => [s.label, ...Object.entries(s.health).map(([k, v]) => `${k}: ${v}`), `two runners at once: ${s.overlaps}`, `DynamoDB Local CPU ${s.cpu[0]}%, bench CPU ${s.cpu[1]}%`, `load ${s.load.loadavg1}, foreign: ${s.load.foreign.dynamoDbLocals} DynamoDB Local, ${s.load.foreign.testRunners} test runners`, `${seconds(s.wallMs)} wall`]);

  const body = [
    `Victim: the node whose task count is closest to the mean (a typical node). Kills are placed at a uniformly random phase of each system's cycle (keeper: one period, ${seconds(config.periodMs)}; baseline: one lease, ${seconds(lockSettings.leaseDurationMs)}). Times run from the kill to the *handler start* of the victim's last task on another node; "first" is the first such start. One long-running cluster per system: after each trial a replacement node joins and the cluster must be quiet (every task on exactly one node, no start for 2 s) before the next kill.`,
    '',
    `keeper at default settings: P = ${config.periodMs} ms, K = ${config.staleTicks}, f = ${config.driftBound}, d = ${config.requestTimeoutMs} ms. Issue target: p99 <= (K + 1) P + P + 300 ms = ${seconds(target)}; README failover bound failoverBoundMs = ${seconds(bound)}.`,
    '',
    table(['series', 'trials', 'victim tasks (median)', 'detection (median / p99)', 'first task (median / p99)', 'all tasks (median / p99)', 'min .. max', 'keeper target'], rows),
    '',
    `Ratio baseline / keeper (medians, all tasks): ${ratio(sum(baseline).median, sum(keeper).median)} with ~${Math.round(summarize(keeper.trials.map((t) => t.tasks)).median)} tasks on the victim, ${ratio(sum(baselineSolo).median, sum(keeperSolo).median)} with all ${taskCount} on the victim.`,
    '',
    'Health during each series (counters over the whole series, setup included):',
    '',
    table(['series', 'counters', '', '', '', 'CPU', 'load at start', 'wall'], healthRows.map((r) => [r[0]!, r[1]!, r[2]!, r[3] ?? '', r[4] ?? '', r[5] ?? '', r[6] ?? '', r[7] ?? ''])),
  ].join('\n');

  const chart = dotPlot({
    title: `Crash takeover: kill -> all of the dead node's tasks run elsewhere (${nodes} nodes)`,
    unit: 'seconds',
    format: (v) => `${v / 1000}`,
    series: [
      { label: `keeper, ~${Math.round(summarize(keeper.trials.map((t) => t.tasks)).median)} tasks on victim`, values: done(keeper), censored: censored(keeper), color: colors.keeper },
      { label: `keeper, ${taskCount} tasks on victim`, values: done(keeperSolo), censored: censored(keeperSolo), color: colors.keeperAlt },
      { label: `lock per task, ~${Math.round(summarize(baseline.trials.map((t) => t.tasks)).median)} on victim`, values: done(baseline), censored: censored(baseline), color: colors.baseline },
      { label: `lock per task, ${taskCount} on victim`, values: done(baselineSolo), censored: censored(baselineSolo), color: colors.baselineAlt },
    ],
    markers: [
      { value: target, label: `issue target ${seconds(target)}` },
      { value: bound, label: `failover bound ${seconds(bound)}` },
    ],
  });

  const misses: string[] = [];
  for (const s of [keeper, keeperSolo]) {
    if (meets(s, target) === false) misses.push(`Crash takeover (${s.label}, ${Math.round(summarize(s.trials.map((t) => t.tasks)).median)} tasks on the victim): p99 ${seconds(sum(s).p99)} (median ${seconds(sum(s).median)}, ${censored(s)} trials did not finish) against the issue target ${seconds(target)}; detection p99 ${seconds(summarize(s.trials.flatMap((t) => (t.detectionMs === undefined ? [] : [t.detectionMs]))).p99)}.`);
    if (meets(s, bound) === false) misses.push(`Crash takeover (${s.label}): p99 ${seconds(sum(s).p99)} exceeds failoverBoundMs = ${seconds(bound)}.`);
  }

  return {
    id: 'crash',
    title: '1. Crash takeover',
    body,
    charts: [{ file: 'bench-crash-takeover.svg', title: 'Crash takeover', svg: chart }],
    headline: [
      {
        figure: `Crash takeover, ${nodes} nodes / ${taskCount} tasks (~${Math.round(summarize(keeper.trials.map((t) => t.tasks)).median)} on the victim)`,
        keeper: medianP99(sum(keeper), seconds),
        baseline: medianP99(sum(baseline), seconds),
        ratio: ratio(sum(baseline).median, sum(keeper).median),
        target: `p99 <= ${seconds(target)}`,
        verdict: verdict(meets(keeper, target)),
      },
      {
        figure: `Crash takeover, all ${taskCount} tasks on the victim`,
        keeper: medianP99(sum(keeperSolo), seconds),
        baseline: medianP99(sum(baselineSolo), seconds),
        ratio: ratio(sum(baselineSolo).median, sum(keeperSolo).median),
        target: `p99 <= ${seconds(target)}`,
        verdict: verdict(meets(keeperSolo, target)),
      },
    ],
    misses,
    data: { target, bound, series: all },
  };
}

/** Variant trials: a fresh table each time, one node alone claims everything, nine join, the first is killed. */
async function soloSeries(ctx: BenchContext, system: 'keeper' | 'baseline', taskCount: number, trials: number): Promise<Series> {
  const label = `${system}, one node holds all`;
  const load = loadSample(ctx.ownPids);
  const cpu = new CpuWatch([ctx.dbPid, process.pid]);
  const began = performance.now();
  const tasks = taskIds(taskCount);
  const results: Trial[] = [];
  const health: Record<string, number> = {};
  let overlaps = 0;
  for (let t = 0; t < trials; t++) {
    const table = system === 'keeper' ? await ctx.tables.keeperTable('solo-keeper', tasks) : await ctx.tables.lockTable('solo-lock');
    let fleet: Fleet;
    let join: () => Promise<void>;
    if (system === 'keeper') {
      const keeper = new KeeperFleet(ctx.endpoint, table, tasks, { maxMovesPerTick: 0 });
      fleet = keeper;
      join = () => keeper.start(Array.from({ length: 9 }, (_, i) => `k${i + 1}`));
    } else {
      const lock = new LockFleet(ctx.endpoint, table, tasks, taskCount, ctx.random);
      fleet = lock;
      // Alone it contends with nobody, so its first attempts need no spreading.
      lock.cluster.start(['l0'], taskCount, 0);
      join = async () => lock.cluster.start(Array.from({ length: 9 }, (_, i) => `l${i + 1}`), LockFleet.capacityFor(taskCount, 9));
    }
    if (system === 'keeper') await fleet.start(['k0']);
    const solo = system === 'keeper' ? 'k0' : 'l0';
    const alone = await waitUntil(() => fleet.tasksOf(solo).length === taskCount, 120_000, 100);
    await join();
    // Keeper: the joiners read their watched peers for a few periods first. Baseline: the
    // joiners' first attempts are spread over one lease; then a random phase of one lease.
    if (system === 'keeper') await sleepMs(3 * fleet.cycleMs + ctx.random() * fleet.cycleMs);
    else await sleepMs(lockSettings.leaseDurationMs + ctx.random() * fleet.cycleMs);
    const lost = fleet.tasksOf(solo);
    const at = await fleet.kill(solo);
    const done = await fleet.ledger.movedAway(lost, solo, at, fleet.takeoverTimeoutMs);
    const first = fleet.ledger.firstMoveAt(lost, solo, at);
    const trial: Trial = {
      victim: solo,
      tasks: lost.length,
      ms: done === undefined ? undefined : done - at,
      firstMs: first === undefined ? undefined : first - at,
      notMoved: done === undefined ? fleet.ledger.notMoved(lost, solo, at).length : 0,
    };
    if (fleet instanceof KeeperFleet) {
      const declared = fleet.cluster.events.declarations.find((d) => d.node === solo && d.at >= at);
      if (declared) trial.detectionMs = declared.at - at;
    }
    if (!alone) ctx.log(`  ${label}: the solo node did not get all ${taskCount} tasks within 120 s`);
    results.push(trial);
    ctx.log(`  ${label} trial ${t + 1}/${trials}: ${trial.tasks} tasks, ${trial.ms === undefined ? `not all moved (${trial.notMoved} left)` : `${Math.round(trial.ms)} ms`}`);
    for (const [k, v] of Object.entries(fleet.health())) health[k] = (health[k] ?? 0) + v;
    overlaps += fleet.ledger.overlaps;
    await fleet.close();
    await ctx.tables.drop(table);
  }
  return { label, system, trials: results, health, overlaps, cpu: cpu.read(), load, wallMs: performance.now() - began };
}

import { resolveConfig, type KeeperOptions } from '../../lib/config.js';
import { rebalanceHoldPasses } from '../../lib/node/pool.js';
import { difference, totals, type OperationCount } from '../capacity-meter.js';
import { barChart, colors } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { KeeperFleet, LockFleet, saturationEvidence, settle, type Fleet } from '../fleet.js';
import { lockSettings } from '../lock-worker.js';
import { CpuWatch, loadSample, type LoadSample, waitForIdle } from '../machine.js';
import { amount, medianP99, ratio, seconds, table, verdict } from '../report.js';
import { sleepMs } from '../run-ledger.js';
import { summarize, type Summary } from '../stats.js';
import { feedRate, taskIds } from '../tables.js';
import { saturationKey } from './churn-trials.js';

/**
 * Scenario 3, steady-state cost: requests and consumed capacity units per node-hour, once
 * every task runs and the cluster is quiet, measured over repeated windows and extrapolated
 * to an hour. 10 nodes; 100, 1,000 and 10,000 tasks; keeper at its defaults and at P = 3 s
 * (the baseline's heartbeat period), the baseline at its README settings.
 */
export interface Window {
  seconds: number;
  ops: Record<string, OperationCount>;
  latencyP50: number;
  latencyP99: number;
  /** Health counters that moved during the window (heartbeat failures, fences, lost leases). */
  healthDelta: Record<string, number>;
  /** Tasks running on exactly one node at the end of the window. */
  runningOnce: number;
  /** Baseline: heartbeats written, and how many the held locks were due. */
  heartbeats?: { done: number; due: number };
  cpu: number[];
}

export interface Row {
  key: string;
  label: string;
  system: 'keeper' | 'baseline';
  tasks: number;
  nodes: number;
  periodMs: number;
  settleMs?: number;
  windows: Window[];
  load: LoadSample;
  saturated: string[];
}

/** How long nothing may have moved before the windows start. */
const quietMsFor = (row: { system: string; periodMs: number }) => (row.system === 'keeper' ? Math.max(3000, (rebalanceHoldPasses + 5) * row.periodMs) : 3000);

const perNodeHour = (value: number, w: Window, nodes: number) => (value / nodes) * (3600 / w.seconds);

function windowFigure(row: Row, pick: (w: Window) => number): Summary {
  return summarize(row.windows.map((w) => perNodeHour(pick(w), w, row.nodes)));
}

const writeUnits = (w: Window) => totals(w.ops).writeUnits;
const writeRequests = (w: Window) => totals(w.ops).writeRequests;
const readUnits = (w: Window) => totals(w.ops).readUnits;
const readRequests = (w: Window) => totals(w.ops).readRequests;
const allRequests = (w: Window) => totals(w.ops).requests;

async function measureRow(ctx: BenchContext, row: Omit<Row, 'windows' | 'load' | 'saturated'>, fleet: Fleet, windowCount: number, windowMs: number, settleTimeoutMs: number, feed?: () => Promise<void>): Promise<Row> {
  const load = loadSample(ctx.ownPids);
  await fleet.start(Array.from({ length: row.nodes }, (_, i) => `${row.system === 'keeper' ? 'k' : 'l'}${i}`));
  await feed?.();
  // True steady state for a cost figure: every task running and nothing moved for a while.
  // keeper: for longer than a task is held before rebalancing may pass it on (a node that took
  // its share in one go is quiet for that long before it evens out with its successors).
  const settleMs = await settle(fleet, quietMsFor(row), settleTimeoutMs);
  ctx.log(`  ${row.label}, ${row.tasks} tasks: ${settleMs === undefined ? `not every task running within ${seconds(settleTimeoutMs)} (${fleet.ledger.runningOnce(fleet.tasks)} of ${row.tasks})` : `settled after ${seconds(settleMs)}`}`);
  // The baseline first gets a probe: a store that cannot keep up gives no cost figure.
  const probe = row.system === 'baseline' ? await saturationEvidence(fleet, 10_000) : [];
  if (settleMs === undefined || probe.length > 0) {
    const saturated = [...(settleMs === undefined ? [`only ${fleet.ledger.runningOnce(fleet.tasks)} of ${row.tasks} tasks running ${seconds(settleTimeoutMs)} after the start`] : []), ...probe];
    ctx.log(`  ${row.label}, ${row.tasks} tasks: saturated (${saturated.join('; ')})`);
    await fleet.close();
    return { ...row, windows: [], load, saturated };
  }
  const windows: Window[] = [];
  for (let i = 0; i < windowCount; i++) {
    const before = fleet.meter.read();
    const healthBefore = fleet.health();
    const heartbeatsBefore = fleet instanceof LockFleet ? fleet.cluster.counters().heartbeats : 0;
    const heldBefore = fleet instanceof LockFleet ? fleet.cluster.heldTotal() : 0;
    const cpu = new CpuWatch([ctx.dbPid, process.pid]);
    await sleepMs(windowMs);
    const after = fleet.meter.read();
    const seconds = (after.at - before.at) / 1000;
    const latencies = fleet.meter.latenciesSince(before);
    const lat = summarize(latencies);
    const healthAfter = fleet.health();
    const healthDelta: Record<string, number> = {};
    for (const [k, v] of Object.entries(healthAfter)) if (v !== (healthBefore[k] ?? 0)) healthDelta[k] = v - (healthBefore[k] ?? 0);
    const window: Window = {
      seconds,
      ops: difference(after, before),
      latencyP50: lat.median,
      latencyP99: lat.p99,
      healthDelta,
      runningOnce: fleet.ledger.runningOnce(fleet.tasks),
      cpu: cpu.read(),
    };
    if (fleet instanceof LockFleet) {
      const held = (heldBefore + fleet.cluster.heldTotal()) / 2;
      window.heartbeats = { done: fleet.cluster.counters().heartbeats - heartbeatsBefore, due: (held * seconds * 1000) / lockSettings.heartbeatPeriodMs };
    }
    windows.push(window);
  }
  await fleet.close();
  const saturated: string[] = [];
  for (const [i, w] of windows.entries()) {
    const prefix = `window ${i + 1}:`;
    if (w.runningOnce < row.tasks) saturated.push(`${prefix} ${w.runningOnce} of ${row.tasks} tasks running`);
    if (Object.keys(w.healthDelta).length > 0) saturated.push(`${prefix} ${Object.entries(w.healthDelta).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    // As in saturationEvidence: fewer than half of the renewals due.
    if (w.heartbeats && w.heartbeats.done < 0.5 * w.heartbeats.due) saturated.push(`${prefix} ${Math.round(w.heartbeats.done)} lock heartbeats written of ${Math.round(w.heartbeats.due)} due`);
  }
  return { ...row, ...(settleMs !== undefined ? { settleMs } : {}), windows, load, saturated };
}

export interface CostData {
  nodes: number;
  /** Task counts of the main rows (keeper at P = 1 s runs every one of them). */
  sizes: number[];
  windowCount: number;
  windowMs: number;
  rows: Row[];
}

export async function measureCost(ctx: BenchContext): Promise<CostData> {
  const nodes = 10;
  const sizes = ctx.quick ? [100, 1000] : [100, 1000, 10_000];
  // 30 s: keeper's periodic reads (reconcile, membership, unowned tasks) come once per 30 periods,
  // so at P = 1 s every node does exactly one in every window.
  const windowCount = ctx.quick ? 1 : 2;
  const windowMs = ctx.quick ? 10_000 : 30_000;
  const fallbackTasks = ctx.quick ? 300 : 200;
  ctx.log(`steady-state cost: ${nodes} nodes, ${sizes.join(' / ')} tasks, ${windowCount} windows of ${windowMs / 1000} s per row`);
  const rows: Row[] = [];
  const keeperRuns: Array<{ tasks: number; settings: KeeperOptions; label: string }> = [
    ...sizes.map((tasks) => ({ tasks, settings: {}, label: 'keeper, P = 1 s (defaults)' })),
    { tasks: 1000, settings: { periodMs: 3000 }, label: 'keeper, P = 3 s' },
  ];
  for (const run of keeperRuns) {
    const ids = taskIds(run.tasks);
    const config = resolveConfig(run.settings);
    // Default capacity (1,000) unless a node's share plus 20 % needs more: the baseline's rule.
    const capacity = Math.max(config.capacity, Math.ceil((run.tasks / nodes) * 1.2));
    const settings = { ...run.settings, capacity };
    const table = await ctx.tables.keeperTable('cost-keeper', []);
    rows.push(await measureRow(ctx, { key: `keeper-${config.periodMs}-${run.tasks}`, label: run.label, system: 'keeper', tasks: run.tasks, nodes, periodMs: config.periodMs }, new KeeperFleet(ctx.endpoint, table, ids, settings), windowCount, windowMs, 180_000, () => ctx.tables.feedTasks(table, ids, feedRate)));
    await ctx.tables.drop(table);
  }
  const baselineRow = async (tasks: number) => {
    const known = ctx.saturated.get(saturationKey('baseline', nodes, tasks));
    if (known) {
      ctx.log(`  lock per task, ${tasks} tasks: saturated earlier in this run; not started again`);
      const row: Row = { key: `baseline-${tasks}`, label: 'lock per task', system: 'baseline', tasks, nodes, periodMs: lockSettings.heartbeatPeriodMs, windows: [], load: loadSample(ctx.ownPids), saturated: [`found earlier in this run: ${known.join('; ')}`] };
      rows.push(row);
      return row;
    }
    const ids = taskIds(tasks);
    const table = await ctx.tables.lockTable('cost-lock');
    const row = await measureRow(ctx, { key: `baseline-${tasks}`, label: 'lock per task', system: 'baseline', tasks, nodes, periodMs: lockSettings.heartbeatPeriodMs }, new LockFleet(ctx.endpoint, table, ids, LockFleet.capacityFor(tasks, nodes), ctx.random), windowCount, windowMs, tasks > fallbackTasks ? 45_000 : 90_000);
    await ctx.tables.drop(table);
    // Let DynamoDB Local drain whatever a saturated baseline left in flight.
    if (row.saturated.length > 0) {
      ctx.saturated.set(saturationKey('baseline', nodes, tasks), row.saturated);
      await waitForIdle(ctx.dbPid);
    }
    rows.push(row);
    return row;
  };
  const skipped: number[] = [];
  let saturatedAt: number | undefined;
  for (const tasks of sizes) {
    // Saturation only gets worse with more tasks: a larger size is not tried.
    if (saturatedAt !== undefined) {
      skipped.push(tasks);
      continue;
    }
    const row = await baselineRow(tasks);
    if (row.saturated.length > 0) saturatedAt = tasks;
  }
  // Below the size that saturated, one more measured size for the per-task rate.
  if (saturatedAt !== undefined && saturatedAt > fallbackTasks && !sizes.includes(fallbackTasks)) await baselineRow(fallbackTasks);
  return { nodes, sizes, windowCount, windowMs, rows };
}

/** The report section, from measured (or recorded) data alone. */
export function renderCost(data: CostData): SectionReport {
  const { nodes, sizes, windowCount, windowMs, rows } = data;
  const baselineRows = rows.filter((r) => r.system === 'baseline');
  const saturatedAt = baselineRows.filter((r) => r.saturated.length > 0 && sizes.includes(r.tasks)).map((r) => r.tasks).sort((a, b) => a - b)[0];
  const skipped = sizes.filter((n) => !baselineRows.some((r) => r.tasks === n));
  const fallback = baselineRows.find((r) => !sizes.includes(r.tasks));

  const find = (key: string) => rows.find((r) => r.key === key);
  const cell = (row: Row, pick: (w: Window) => number) => (row.saturated.length > 0 && (row.system === 'baseline' || row.windows.length === 0) ? 'saturated' : medianP99(windowFigure(row, pick), amount));
  const mainRows = rows.map((r) => [
    r.label,
    r.tasks.toLocaleString('en-US'),
    cell(r, allRequests),
    cell(r, readRequests),
    cell(r, readUnits),
    cell(r, writeRequests),
    cell(r, writeUnits),
    r.saturated.length > 0 && r.system === 'baseline' ? 'saturated' : amount(windowFigure(r, writeUnits).median * r.nodes / r.tasks),
    r.windows.length ? `${amount(summarize(r.windows.map((w) => w.latencyP50)).median)} / ${amount(summarize(r.windows.map((w) => w.latencyP99)).median)} ms` : '-',
    r.windows.length ? `${summarize(r.windows.map((w) => w.cpu[0]!)).median}% / ${summarize(r.windows.map((w) => w.cpu[1]!)).median}%` : '-',
  ]);
  const purposeRows = rows.flatMap((r) => {
    const labels = [...new Set(r.windows.flatMap((w) => Object.keys(w.ops)))].sort();
    return labels
      .map((label) => {
        const reqs = windowFigure(r, (w) => w.ops[label]?.requests ?? 0);
        const units = windowFigure(r, (w) => (w.ops[label]?.readUnits ?? 0) + (w.ops[label]?.writeUnits ?? 0));
        const computed = windowFigure(r, (w) => w.ops[label]?.computedWriteUnits ?? 0);
        return { label, reqs, units, computed };
      })
      .filter((p) => p.reqs.median > 0 || p.reqs.p99 > 0)
      .map((p) => [`${r.label}, ${r.tasks.toLocaleString('en-US')} tasks`, p.label, amount(p.reqs.median), amount(p.units.median), p.computed.median > 0 ? amount(p.computed.median) : '-']);
  });

  // Targets: keeper writes = 3,600 / P(s) per node-hour, the same at 100 and 10,000 tasks;
  // write units at 1,000 tasks at least 100x below the baseline at P = 3 s and 25x at defaults.
  const keeperWrites = (key: string) => {
    const row = find(key);
    return row ? windowFigure(row, writeRequests) : undefined;
  };
  const small = keeperWrites(`keeper-1000-${sizes[0]}`);
  const large = keeperWrites(`keeper-1000-${sizes.at(-1)}`);
  const expectedWrites = 3600;
  const within = (s: Summary | undefined) => s !== undefined && Math.abs(s.median - expectedWrites) <= 0.05 * expectedWrites && Math.abs(s.p99 - expectedWrites) <= 0.05 * expectedWrites;
  const flatMet = small && large ? within(small) && within(large) : undefined;
  const base1000 = find('baseline-1000');
  const k3 = find('keeper-3000-1000');
  const k1 = find('keeper-1000-1000');
  const unitRatio = (keeper: Row | undefined) => (base1000 && keeper && base1000.saturated.length === 0 ? windowFigure(base1000, writeUnits).median / windowFigure(keeper, writeUnits).median : undefined);
  const r3 = unitRatio(k3);
  const r1 = unitRatio(k1);
  // When the baseline saturated at 1,000 tasks: a lower bound from what it must write at least,
  // a heartbeat per lock per period, at the per-lock heartbeat units measured at a size it ran.
  const measuredBase = rows.filter((r) => r.system === 'baseline' && r.saturated.length === 0).sort((a, b) => b.tasks - a.tasks)[0];
  const heartbeatUnitsPerLockHour = measuredBase ? windowFigure(measuredBase, (w) => w.ops['heartbeat (PutItem)']?.writeUnits ?? 0).median * measuredBase.nodes / measuredBase.tasks : undefined;
  const lowerBound = (keeper: Row | undefined) =>
    r3 === undefined && heartbeatUnitsPerLockHour !== undefined && keeper ? (heartbeatUnitsPerLockHour * 1000) / nodes / windowFigure(keeper, writeUnits).median : undefined;
  const lb3 = lowerBound(k3);
  const lb1 = lowerBound(k1);
  // The same, with everything the baseline wrote per task-hour at the largest size it ran.
  const perTaskHour = measuredBase ? (windowFigure(measuredBase, writeUnits).median * measuredBase.nodes) / measuredBase.tasks : undefined;
  const extrapolated = (keeper: Row | undefined) => (r3 === undefined && perTaskHour !== undefined && keeper ? (perTaskHour * 1000) / nodes / windowFigure(keeper, writeUnits).median : undefined);
  const ex3 = extrapolated(k3);
  const ex1 = extrapolated(k1);
  const saturatedRows = rows.filter((r) => r.saturated.length > 0);

  const body = [
    `Each row starts a fresh cluster on a fresh table (keeper's tasks added at ${feedRate} per second once the nodes run), waits until every task runs on exactly one node and no handler has started for ${rebalanceHoldPasses + 5} periods (keeper: longer than a task is held before rebalancing may pass it on; baseline: 3 s), then counts ${windowCount} windows of ${windowMs / 1000} s. Figures are per node and hour (window count / ${nodes} nodes x 3,600 s / window length): median / p99 over the windows. Units are read and write capacity units as DynamoDB Local reported them (table plus indexes; it reports 0 for a Query that returns nothing), plus the computed units of failed conditional writes (the last column of the breakdown). At P = 3 s keeper's periodic reads come every 90 s, so a 30 s window holds them for some nodes only. keeper's capacity is its default 1,000 unless a node's share plus 20 % needs more (the 10,000-task row: 1,200); the baseline's is ceil(tasks / 10) x 1.2.`,
    '',
    table(['system', 'tasks', 'requests / node-hour', 'read requests', 'read units', 'write requests', 'write units', 'write units / task-hour', 'latency p50 / p99 (median window)', 'CPU: DynamoDB Local / bench'], mainRows),
    '',
    `**Targets.** keeper writes per node-hour at P = 1 s: ${small ? medianP99(small, amount) : 'n/a'} at ${sizes[0]} tasks and ${large ? medianP99(large, amount) : 'n/a'} at ${sizes.at(-1)?.toLocaleString('en-US')} tasks, against 3,600 / P = ${expectedWrites} (within 5 %): ${verdict(flatMet)}. ` +
      (r3 !== undefined
        ? `Write units at 1,000 tasks, baseline / keeper: ${ratio(r3, 1)} at the same heartbeat period (keeper P = 3 s), target >= 100x: ${verdict(r3 >= 100)}; ${r1 === undefined ? 'n/a' : `${ratio(r1, 1)} at keeper's defaults, target >= 25x: ${verdict(r1 >= 25)}`}.`
        : `Write units at 1,000 tasks, baseline / keeper: **not measured**, the baseline saturated at ${saturatedAt?.toLocaleString('en-US') ?? 'n/a'} tasks on this machine. ` +
          `Lower bound from heartbeats alone (a lock is renewed once per period whatever else happens; ${heartbeatUnitsPerLockHour === undefined ? 'n/a' : amount(heartbeatUnitsPerLockHour)} heartbeat write units per lock-hour measured at ${measuredBase?.tasks ?? 'n/a'} tasks): 1,000 locks on ${nodes} nodes write at least ${heartbeatUnitsPerLockHour === undefined ? 'n/a' : amount((heartbeatUnitsPerLockHour * 1000) / nodes)} units per node-hour, ${lb3 === undefined ? 'n/a' : ratio(lb3, 1)} keeper's at P = 3 s and ${lb1 === undefined ? 'n/a' : ratio(lb1, 1)} keeper's defaults. ` +
          `That bound ${lb3 === undefined ? 'is n/a' : lb3 >= 100 ? 'already meets' : 'alone does not reach'} the 100x target and ${lb1 === undefined ? 'is n/a for' : lb1 >= 25 ? 'meets' : 'does not reach'} the 25x target. ` +
          `The baseline's failed acquire writes come on top: at the ${perTaskHour === undefined ? 'n/a' : amount(perTaskHour)} write units per task-hour measured at ${measuredBase?.tasks ?? 'n/a'} tasks (heartbeats and failed acquires), 1,000 tasks would write ${perTaskHour === undefined ? 'n/a' : amount((perTaskHour * 1000) / nodes)} units per node-hour, ${ex3 === undefined ? 'n/a' : ratio(ex3, 1)} keeper's at P = 3 s and ${ex1 === undefined ? 'n/a' : ratio(ex1, 1)} its defaults. That is an extrapolation, not a measurement: more waiting workers per task at 1,000 tasks (fewer sit at capacity) would make it larger still.`),
    skipped.length > 0 ? `The baseline was not started at ${skipped.map((n) => n.toLocaleString('en-US')).join(', ')} tasks: it had already saturated at ${saturatedAt?.toLocaleString('en-US')}.` : '',
    '',
    saturatedRows.length > 0
      ? ['**Saturation.** Where a row says "saturated", DynamoDB Local on this machine could not serve the system at that size, so no cost figure is given; the evidence:', '', ...saturatedRows.map((r) => `- ${r.label}, ${r.tasks.toLocaleString('en-US')} tasks: ${r.saturated.slice(0, 6).join('; ')}${r.saturated.length > 6 ? ` (and ${r.saturated.length - 6} more)` : ''}.`)].join('\n')
      : 'No row saturated DynamoDB Local.',
    '',
    'Where the requests go (per node-hour, median window): purpose is read from each request (keeper: lib/store key design; baseline: the lock client\'s conditions).',
    '',
    table(['row', 'purpose (operation)', 'requests / node-hour', 'units / node-hour', 'of which computed (failed conditions)'], purposeRows),
  ].join('\n');

  const chartSizes = [...new Set([...sizes, ...(fallback ? [fallback.tasks] : [])])].sort((a, b) => a - b);
  const groupFor = (tasks: number) => {
    const k = find(`keeper-1000-${tasks}`);
    const k3row = find(`keeper-3000-${tasks}`);
    const b = find(`baseline-${tasks}`);
    const v = (r: Row | undefined) => (r && !(r.system === 'baseline' && r.saturated.length > 0) ? windowFigure(r, writeUnits).median : undefined);
    return {
      label: `${tasks.toLocaleString('en-US')} tasks`,
      values: [v(k), v(k3row), v(b)],
      notes: [k ? undefined : 'not run', k3row ? undefined : 'not run', b ? (b.saturated.length > 0 ? 'saturated' : undefined) : skipped.includes(tasks) ? 'saturated' : 'not run'],
    };
  };
  const chart = barChart({
    title: 'Write capacity units per node-hour, 10 nodes (median window, log scale)',
    unit: 'write units per node-hour',
    log: true,
    format: (v) => (v >= 1000 ? `${Math.round(v / 100) / 10}k` : String(Math.round(v))),
    series: [
      { label: 'keeper, P = 1 s', color: colors.keeper },
      { label: 'keeper, P = 3 s', color: colors.keeperAlt },
      { label: 'lock per task (3 s heartbeat)', color: colors.baseline },
    ],
    groups: chartSizes.map(groupFor),
  });

  const misses: string[] = [];
  if (flatMet === false) misses.push(`Steady-state writes per node-hour at P = 1 s: ${small ? medianP99(small, amount) : 'n/a'} at ${sizes[0]} tasks, ${large ? medianP99(large, amount) : 'n/a'} at ${sizes.at(-1)} tasks; target 3,600 at both (within 5 %).`);
  if (r3 !== undefined && r3 < 100) misses.push(`Write units at 1,000 tasks: baseline / keeper (P = 3 s) = ${ratio(r3, 1)}, target >= 100x.`);
  if (r1 !== undefined && r1 < 25) misses.push(`Write units at 1,000 tasks: baseline / keeper (defaults) = ${ratio(r1, 1)}, target >= 25x.`);
  for (const r of rows.filter((x) => x.system === 'keeper' && x.saturated.length > 0)) misses.push(`keeper did not hold steady state at ${r.tasks} tasks (${r.label}): ${r.saturated.slice(0, 4).join('; ')}.`);

  const wu = (r: Row | undefined, tasks?: number) => {
    if (!r) return tasks !== undefined && skipped.includes(tasks) ? `saturated (at ${saturatedAt?.toLocaleString('en-US')} already)` : 'n/a';
    if (r.system === 'baseline' && r.saturated.length > 0) return fallback ? `saturated; at ${fallback.tasks} tasks: ${medianP99(windowFigure(fallback, writeUnits), amount)}` : 'saturated';
    return medianP99(windowFigure(r, writeUnits), amount);
  };
  const headline = [
    ...sizes.map((tasks) => {
      const k = find(`keeper-1000-${tasks}`);
      const b = find(`baseline-${tasks}`);
      const bOk = b && b.saturated.length === 0;
      return {
        figure: `Write units per node-hour, ${tasks.toLocaleString('en-US')} tasks (keeper P = 1 s)`,
        keeper: wu(k),
        baseline: wu(b, tasks),
        ratio: bOk && k ? ratio(windowFigure(b, writeUnits).median, windowFigure(k, writeUnits).median) : tasks === 1000 && lb1 !== undefined ? `>= ${ratio(lb1, 1)} (heartbeats alone); ~${ratio(ex1 ?? Number.NaN, 1)} extrapolated` : 'n/a',
        target: tasks === 1000 ? '>= 25x fewer' : 'writes = 3,600 at 100 and 10,000',
        verdict: tasks === 1000 ? (r1 !== undefined ? verdict(r1 >= 25) : boundVerdict(lb1, ex1, 25)) : verdict(flatMet),
      };
    }),
    {
      figure: 'Write units per node-hour, 1,000 tasks, keeper at P = 3 s',
      keeper: wu(k3),
      baseline: wu(base1000),
      ratio: r3 === undefined ? (lb3 === undefined ? 'n/a' : `>= ${ratio(lb3, 1)} (heartbeats alone); ~${ratio(ex3 ?? Number.NaN, 1)} extrapolated`) : ratio(r3, 1),
      target: '>= 100x fewer',
      verdict: r3 !== undefined ? verdict(r3 >= 100) : boundVerdict(lb3, ex3, 100),
    },
  ];
  return { id: 'cost', title: '3. Steady-state cost', body, charts: [{ file: 'bench-steady-cost.svg', title: 'Steady-state cost', svg: chart }], headline, misses, data };
}

/**
 * A target judged without a measurement at 1,000 tasks: met if even the heartbeat-only lower
 * bound reaches it; otherwise not shown, with the extrapolation for the reader to weigh.
 */
function boundVerdict(lowerBound: number | undefined, extrapolated: number | undefined, target: number): string {
  if (lowerBound === undefined) return 'n/a';
  if (lowerBound >= target) return `met (lower bound ${ratio(lowerBound, 1)})`;
  return `not measured: lower bound ${ratio(lowerBound, 1)}, extrapolation ~${ratio(extrapolated ?? Number.NaN, 1)}`;
}

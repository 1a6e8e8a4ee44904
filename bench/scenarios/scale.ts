import { resolveConfig, type KeeperOptions } from '../../lib/config.js';
import { difference, totals, type OperationCount } from '../capacity-meter.js';
import { barChart, colors } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { KeeperFleet, settle, typicalNode } from '../fleet.js';
import { CpuWatch, loadSample, type LoadSample } from '../machine.js';
import { amount, medianP99, seconds, table, verdict } from '../report.js';
import { sleepMs } from '../run-ledger.js';
import { summarize, type Summary } from '../stats.js';
import { feedRate, taskIds } from '../tables.js';

/**
 * Scenario 4, scale: 10, 50 and 200 keeper nodes (all in this process) with 20,000 tasks:
 * reads per node per period (requests and read units), takeover time after a kill, and this
 * process's memory per node. The issue's target: reads per node per period constant from 10
 * to 200 nodes, within 10 %. (Worker memory against the 100 MB target is measured on a real
 * worker process in scenario 5.)
 */
export interface SizeResult {
  nodes: number;
  /** The heartbeat period this size ran at (absent in runs recorded before it could differ). */
  periodMs?: number;
  tasks: number;
  capacity: number;
  settleMs?: number;
  windows: Array<{ seconds: number; ops: Record<string, OperationCount>; cpu: number[] }>;
  kills: Array<{ tasks: number; ms?: number; detectionMs?: number }>;
  memory: { rssBeforeMiB: number; rssAfterMiB: number; heapBeforeMiB: number; heapAfterMiB: number };
  health: Record<string, number>;
  load: LoadSample;
  wallMs: number;
}

const mib = (bytes: number) => bytes / 2 ** 20;

/** Reads of a node's own tasks (bench/keeper-cluster.ts labels): they follow tasks per node, not N. */
const ownTaskRead = (label: string) => label.startsWith('tasks by owner') || label.startsWith('get task');

export interface ScaleData {
  windowMs: number;
  windowCount: number;
  kills: number;
  periodMs: number;
  results: SizeResult[];
}

/** How the nodes of one size come up. */
const rollout = { batch: 10, everyMs: 500 };

/**
 * Tasks added per second. 200 nodes in this one process already keep a core busy with their
 * heartbeats and watch reads, so at that size the feed is slower (docs/bench-findings.md,
 * finding 2): the scenario measures the steady state and takeovers, not how fast one
 * machine can take on new work.
 */
const feedRateFor = (nodes: number) => (nodes >= 200 ? feedRate / 3 : feedRate);

/**
 * The heartbeat period of one size. Every request costs this process about 1 to 2 ms of CPU in
 * the AWS SDK alone, so 200 nodes at P = 1 s need more than the one core a Node.js process
 * has, next to DynamoDB Local on the other (docs/bench-findings.md, finding 3). At 200 nodes
 * the period is 4 s, which puts as many requests per second through this process as 50 nodes
 * at 1 s. Everything the target compares is counted per period, so it is unaffected;
 * takeover times scale with P and are reported with it.
 */
const periodFor = (nodes: number) => (nodes >= 200 ? 4000 : resolveConfig({}).periodMs);

export async function measureScale(ctx: BenchContext): Promise<ScaleData> {
  const sizes = ctx.quick ? [10, 20] : [10, 50, 200];
  const taskCount = ctx.quick ? 2000 : 20_000;
  const windowCount = ctx.quick ? 1 : 2;
  // One window = 30 periods: every node does its periodic reads exactly once per window.
  const windowPeriods = ctx.quick ? 10 : 30;
  const kills = ctx.quick ? 1 : 2;
  const periodMs = resolveConfig({}).periodMs;
  ctx.log(`scale: ${sizes.join(' / ')} nodes, ${taskCount} tasks, ${windowCount} windows of ${windowPeriods} periods, ${kills} kills each`);
  const results: SizeResult[] = [];
  for (const nodes of sizes) {
    const began = performance.now();
    const load = loadSample(ctx.ownPids);
    const tasks = taskIds(taskCount);
    // Enough room for the survivors of every kill in this series: capacity refuses the rest.
    const capacity = Math.max(resolveConfig({}).capacity, Math.ceil((taskCount / (nodes - kills)) * 1.1));
    const sizePeriodMs = periodFor(nodes);
    // Waits are in periods, so that a slower heartbeat gets as many rounds to settle.
    const periods = sizePeriodMs / periodMs;
    const settings: KeeperOptions = { capacity, ...(sizePeriodMs !== periodMs ? { periodMs: sizePeriodMs } : {}) };
    const table = await ctx.tables.keeperTable('scale', []);
    globalThis.gc?.();
    const before = process.memoryUsage();
    const fleet = new KeeperFleet(ctx.endpoint, table, tasks, settings);
    // Rolled out in waves, as a deployment brings nodes up: 200 nodes joining in the same
    // instant all read and write their ring neighbourhoods at once (docs/bench-findings.md).
    const ids = Array.from({ length: nodes }, (_, i) => `k${i}`);
    for (let i = 0; i < ids.length; i += rollout.batch) await Promise.all([fleet.start(ids.slice(i, i + rollout.batch)), sleepMs(rollout.everyMs)]);
    await ctx.tables.feedTasks(table, tasks, feedRateFor(nodes));
    // Settling is timed from when the last task was added.
    const settleTimeoutMs = 180_000 * periods;
    const settleMs = await settle(fleet, 3000 * periods, settleTimeoutMs);
    ctx.log(`  ${nodes} nodes (P = ${seconds(sizePeriodMs)}): ${settleMs === undefined ? `not quiet within ${seconds(settleTimeoutMs)} (${fleet.ledger.runningOnce(tasks)} of ${taskCount} running once)` : `quiet after ${seconds(settleMs)}`}`);
    const windows: SizeResult['windows'] = [];
    for (let i = 0; i < windowCount; i++) {
      const r0 = fleet.meter.read();
      const cpu = new CpuWatch([ctx.dbPid, process.pid]);
      await sleepMs(windowPeriods * sizePeriodMs);
      const r1 = fleet.meter.read();
      windows.push({ seconds: (r1.at - r0.at) / 1000, ops: difference(r1, r0), cpu: cpu.read() });
    }
    globalThis.gc?.();
    const after = process.memoryUsage();
    const killResults: SizeResult['kills'] = [];
    for (let k = 0; k < kills; k++) {
      await sleepMs(ctx.random() * fleet.cycleMs);
      const { id } = typicalNode(fleet);
      const lost = fleet.tasksOf(id);
      const at = await fleet.kill(id);
      const done = await fleet.ledger.movedAway(lost, id, at, fleet.takeoverTimeoutMs);
      const declared = fleet.cluster.events.declarations.find((d) => d.node === id && d.at >= at);
      killResults.push({ tasks: lost.length, ...(done !== undefined ? { ms: done - at } : {}), ...(declared ? { detectionMs: declared.at - at } : {}) });
      ctx.log(`  ${nodes} nodes, kill ${k + 1}/${kills}: ${lost.length} tasks, ${done === undefined ? 'not all moved' : `${Math.round(done - at)} ms`}`);
      if (k + 1 < kills) await settle(fleet, 2000 * periods, 60_000 * periods, 3000 * periods);
    }
    const health = fleet.health();
    await fleet.close();
    await ctx.tables.drop(table);
    results.push({
      nodes, periodMs: sizePeriodMs, tasks: taskCount, capacity, ...(settleMs !== undefined ? { settleMs } : {}), windows, kills: killResults,
      memory: { rssBeforeMiB: mib(before.rss), rssAfterMiB: mib(after.rss), heapBeforeMiB: mib(before.heapUsed), heapAfterMiB: mib(after.heapUsed) },
      health, load, wallMs: performance.now() - began,
    });
  }
  return { windowMs: windowPeriods * periodMs, windowCount, kills, periodMs, results };
}

/** The report section, from measured (or recorded) data alone. */
export function renderScale(data: ScaleData): SectionReport {
  const { windowMs, windowCount, kills, periodMs, results } = data;
  const sizes = results.map((r) => r.nodes);
  const taskCount = results[0]!.tasks;

  const periodOf = (r: SizeResult) => r.periodMs ?? periodMs;
  /** ' (P = 4.00 s)' for a size that ran at another period than the default, else ''. */
  const periodNote = (r: SizeResult) => (periodOf(r) === periodMs ? '' : ` (P = ${seconds(periodOf(r))})`);
  const perNodePeriod = (r: SizeResult, pick: (ops: Record<string, OperationCount>) => number): Summary =>
    summarize(r.windows.map((w) => pick(w.ops) / r.nodes / ((w.seconds * 1000) / periodOf(r))));
  const readReq = (ops: Record<string, OperationCount>) => totals(ops).readRequests;
  const readUnits = (ops: Record<string, OperationCount>) => totals(ops).readUnits;
  const writeReq = (ops: Record<string, OperationCount>) => totals(ops).writeRequests;
  // Reads a node makes as a member (its watched peers, the membership, the free pool), apart
  // from reads of its own tasks, which scale with how many tasks it owns and not with N.
  const nodeUnits = (ops: Record<string, OperationCount>) => totals(ops, (label) => !ownTaskRead(label)).readUnits;
  const ownUnits = (ops: Record<string, OperationCount>) => totals(ops, ownTaskRead).readUnits;
  /** Own-task read units per 1,000 owned tasks per period. */
  const perThousandTasks = (r: SizeResult) => summarize(r.windows.map((w) => (ownUnits(w.ops) / r.tasks) * 1000 / ((w.seconds * 1000) / periodOf(r))));
  const spread = (pick: (ops: Record<string, OperationCount>) => number) => {
    const medians = results.map((r) => perNodePeriod(r, pick).median);
    return Math.max(...medians) / Math.min(...medians) - 1;
  };
  const reqSpread = spread(readReq);
  const unitSpread = spread(readUnits);
  const nodeUnitSpread = spread(nodeUnits);
  const reqMet = results.length > 1 ? reqSpread <= 0.1 : undefined;
  const nodeUnitMet = results.length > 1 ? nodeUnitSpread <= 0.1 : undefined;

  const rows = results.map((r) => {
    const kill = summarize(r.kills.flatMap((k) => (k.ms === undefined ? [] : [k.ms])));
    const det = summarize(r.kills.flatMap((k) => (k.detectionMs === undefined ? [] : [k.detectionMs])));
    return [
      `${r.nodes}${periodNote(r)}`,
      `${Math.round(r.tasks / r.nodes)} (capacity ${r.capacity})`,
      r.settleMs === undefined ? `not quiet in ${seconds(180 * periodOf(r))}` : seconds(r.settleMs),
      medianP99(perNodePeriod(r, readReq), (v) => v.toFixed(2)),
      medianP99(perNodePeriod(r, readUnits), (v) => v.toFixed(2)),
      medianP99(perNodePeriod(r, nodeUnits), (v) => v.toFixed(2)),
      medianP99(perThousandTasks(r), (v) => v.toFixed(2)),
      medianP99(perNodePeriod(r, writeReq), (v) => v.toFixed(2)),
      `${medianP99(kill, seconds)} (${r.kills.length} kills${r.kills.some((k) => k.ms === undefined) ? `, ${r.kills.filter((k) => k.ms === undefined).length} unfinished` : ''}; ~${Math.round(summarize(r.kills.map((k) => k.tasks)).median)} tasks)`,
      det.n ? medianP99(det, seconds) : '-',
      // Without a forced GC, heap deltas are noise; `npm run bench` passes --expose-gc.
      globalThis.gc ? `${amount((r.memory.rssAfterMiB - r.memory.rssBeforeMiB) / r.nodes)} / ${amount((r.memory.heapAfterMiB - r.memory.heapBeforeMiB) / r.nodes)}` : 'n/a (no --expose-gc)',
      `${summarize(r.windows.map((w) => w.cpu[0]!)).median}% / ${summarize(r.windows.map((w) => w.cpu[1]!)).median}%`,
      Object.entries(r.health).map(([k, v]) => `${k} ${v}`).join(', '),
    ];
  });
  const purposes = [...new Set(results.flatMap((r) => r.windows.flatMap((w) => Object.entries(w.ops).filter(([, c]) => c.readUnits > 0 || ['GetItem', 'BatchGetItem', 'Query', 'Scan'].includes(c.operation)).map(([label]) => label))))].sort();
  const purposeRows = purposes.filter((label) => results.some((r) => perNodePeriod(r, (ops) => ops[label]?.requests ?? 0).median > 0)).map((label) => [
    label,
    ...results.map((r) => `${perNodePeriod(r, (ops) => ops[label]?.requests ?? 0).median.toFixed(3)} req, ${perNodePeriod(r, (ops) => ops[label]?.readUnits ?? 0).median.toFixed(2)} RU`),
  ]);

  const body = [
    `${taskCount.toLocaleString('en-US')} tasks over N keeper nodes at default settings (P = ${seconds(periodMs)}, k = 3 watched peers) except capacity${results.some((r) => periodOf(r) !== periodMs) ? ` and, at ${results.filter((r) => periodOf(r) !== periodMs).map((r) => `${r.nodes} nodes, P = ${seconds(periodOf(r))}`).join('; ')} (each request costs this process 1 to 2 ms of CPU in the AWS SDK, and 200 nodes at P = 1 s need more than the one core it has: docs/bench-findings.md, finding 3; the longer period puts as many requests per second through it as 50 nodes at 1 s)` : ''}, all nodes in this process with a client each, started ${rollout.batch} every ${rollout.everyMs / 1000} s. Tasks are added at ${feedRate} per second (${feedRateFor(200)} per second at 200 nodes) once the nodes run (all at once, the claims saturate DynamoDB Local here: docs/bench-findings.md). After every task runs and no handler has started for 3 periods (or 180 periods passed), ${windowCount} windows of ${Math.round(windowMs / periodMs)} periods count every read; "per node per period" = reads in the window / N / (window / P). Then ${kills} typical nodes are killed one after another (no replacement; capacity leaves room for the survivors) and the takeover is timed as in scenario 1.`,
    '',
    table(['nodes', 'tasks per node', 'quiet after', 'read requests / node / period', 'read units / node / period', 'of which node reads (peers, membership, free pool)', 'own-task read units / 1,000 tasks / period', 'write requests / node / period', 'takeover after a kill (median / p99)', 'detection (median / p99)', 'this process, per node: RSS / heap MiB (after a forced GC)', 'CPU: DynamoDB Local / bench', 'health counters'], rows),
    '',
    `**Target** (reads per node per period constant from ${sizes[0]} to ${sizes.at(-1)} nodes, within 10 %; spread = largest median / smallest median - 1): read requests vary by ${(reqSpread * 100).toFixed(1)} % across sizes: ${verdict(reqMet)}. The read units of a node's reads as a member (watched peers, membership, free pool) vary by ${(nodeUnitSpread * 100).toFixed(1)} %: ${verdict(nodeUnitMet)}. All read units together vary by ${(unitSpread * 100).toFixed(1)} %, and fall as nodes are added: the rest are reads of a node's own tasks (its periodic look at them, tasks handed to it), which follow how many tasks it owns, ${results.map((r) => Math.round(r.tasks / r.nodes)).join(' / ')} here, at ${results.map((r) => perThousandTasks(r).median.toFixed(2)).join(' / ')} units per 1,000 owned tasks per period.`,
    '',
    'Reads by purpose, per node per period (median window):',
    '',
    table(['purpose', ...results.map((r) => `${r.nodes} nodes`)], purposeRows),
    '',
    'The lock-per-task baseline is not run at these sizes: at 20,000 tasks it would hold 20,000 leases, each renewed every 3 s (6,667 writes/s), on top of an outstanding acquire attempt per task for every worker below capacity; scenario 3 shows where DynamoDB Local on this machine stops keeping up with it.',
  ].join('\n');

  const chart = barChart({
    title: `Reads per node per period, ${taskCount.toLocaleString('en-US')} tasks (median window)`,
    unit: 'per node per period',
    series: [
      { label: 'read requests', color: colors.keeper },
      { label: 'read units, all', color: colors.keeperAlt },
      { label: 'read units, node reads', color: colors.keeperThird },
    ],
    groups: results.map((r) => ({ label: `${r.nodes} nodes`, values: [perNodePeriod(r, readReq).median, perNodePeriod(r, readUnits).median, perNodePeriod(r, nodeUnits).median] })),
    format: (v) => v.toFixed(2),
  });
  const misses: string[] = [];
  if (reqMet === false) misses.push(`Scale: read requests per node per period vary by ${(reqSpread * 100).toFixed(1)} % from ${sizes[0]} to ${sizes.at(-1)} nodes (${results.map((r) => `${r.nodes}: ${perNodePeriod(r, readReq).median.toFixed(2)}`).join(', ')}); target within 10 %.`);
  if (nodeUnitMet === false) misses.push(`Scale: read units of node reads per node per period vary by ${(nodeUnitSpread * 100).toFixed(1)} % from ${sizes[0]} to ${sizes.at(-1)} nodes (${results.map((r) => `${r.nodes}: ${perNodePeriod(r, nodeUnits).median.toFixed(2)}`).join(', ')}); target within 10 %.`);
  return {
    id: 'scale',
    title: '4. Scale',
    body,
    charts: [{ file: 'bench-scale.svg', title: 'Reads per node per period', svg: chart }],
    headline: [
      {
        figure: `Read requests per node per period, ${sizes.join(' / ')} nodes, ${taskCount.toLocaleString('en-US')} tasks`,
        keeper: results.map((r) => perNodePeriod(r, readReq).median.toFixed(2)).join(' / '),
        baseline: 'not run (see 3.)',
        ratio: 'n/a',
        target: 'constant within 10 %',
        verdict: verdict(reqMet),
      },
      {
        figure: `Read units per node per period, node reads (peers, membership, free pool), ${sizes.join(' / ')} nodes`,
        keeper: results.map((r) => perNodePeriod(r, nodeUnits).median.toFixed(2)).join(' / '),
        baseline: 'not run (see 3.)',
        ratio: 'n/a',
        target: 'constant within 10 %',
        verdict: verdict(nodeUnitMet),
      },
      {
        figure: `Read units per node per period, all (own-task reads follow tasks per node: ${results.map((r) => Math.round(r.tasks / r.nodes)).join(' / ')})`,
        keeper: results.map((r) => perNodePeriod(r, readUnits).median.toFixed(2)).join(' / '),
        baseline: 'not run (see 3.)',
        ratio: 'n/a',
        target: '-',
        verdict: '-',
      },
      {
        figure: `Crash takeover at ${results.at(-1)!.nodes} nodes${periodNote(results.at(-1)!)}, ${taskCount.toLocaleString('en-US')} tasks`,
        // A fleet that never settled has no typical victim to time: say so instead of "0 ms".
        keeper: results.at(-1)!.settleMs === undefined ? `not measured: the fleet was not quiet within ${seconds(180 * periodOf(results.at(-1)!))}` : medianP99(summarize(results.at(-1)!.kills.flatMap((k) => (k.ms === undefined ? [] : [k.ms]))), seconds),
        baseline: 'not run',
        ratio: 'n/a',
        target: '-',
        verdict: '-',
      },
    ],
    misses,
    data,
  };
}

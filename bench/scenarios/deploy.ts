import { resolveConfig, type KeeperOptions } from '../../lib/config.js';
import type { BenchContext, SectionReport } from '../context.js';
import { CapacityMeter } from '../capacity-meter.js';
import { KeeperCluster, keeperRequestLabel } from '../keeper-cluster.js';
import { count, seconds, table, verdict } from '../report.js';
import { RunLedger } from '../run-ledger.js';
import { percentile } from '../stats.js';
import { taskIds } from '../tables.js';

/**
 * Scenario `deploy` (issue 15): every worker of a cluster replaced by a new one, the two ways
 * ECS does it. One at a time: start a new worker, wait until it is up, stop an old one
 * (SIGTERM: Worker.stop), and again. 200 %: every new worker starts, then every old one is
 * stopped at once. Measured from the handlers' own starts and stops: how many times each
 * task started during the deploy (ideal: once, from an old worker straight to a new one),
 * the longest a task went without a runner, and how many tasks started again in the
 * `afterMs` after the last old worker left (rebalancing, or tasks that went astray). With
 * appVersion (old and new workers publish different versions, as KeeperCluster makes them)
 * and without (only the leaving flag tells the nodes apart).
 */
const targetMs = 300;
const afterMs = 13_000;

interface DeployTrial {
  /** Task starts from the first new worker's start until the last old worker had left. */
  starts: number;
  /** The most starts of one task in that window. */
  maxStarts: number;
  /** Every stretch without a runner that a task had in the window, in ms (a stop until the next start anywhere). */
  gaps: number[];
  /** Task starts in the `afterMs` after the deploy. */
  startsAfter: number;
  /** Two runners of one task at once (never expected). */
  overlaps: number;
  deployMs: number;
}

interface DeploySeries {
  label: string;
  pattern: 'one at a time' | '200 %';
  versions: boolean;
  tasks: number;
  nodes: number;
  trials: DeployTrial[];
}

export interface DeployData {
  targetMs: number;
  afterMs: number;
  periodMs: number;
  series: DeploySeries[];
}

/** The handlers' starts and stops with their times, all of them (RunLedger keeps the last few per task). */
class DeployLedger extends RunLedger {
  readonly events: Array<{ task: string; node: string; at: number; kind: 'start' | 'stop' }> = [];
  override started(task: string, node: string, at = performance.now()): void {
    super.started(task, node, at);
    this.events.push({ task, node, at, kind: 'start' });
  }
  override stopped(task: string, node: string, at = performance.now()): void {
    super.stopped(task, node, at);
    this.events.push({ task, node, at, kind: 'stop' });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const began = performance.now();
  while (!condition()) {
    if (performance.now() - began > timeoutMs) throw new Error(`deploy: timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function trial(ctx: BenchContext, pattern: DeploySeries['pattern'], versions: boolean, nodes: number, tasks: readonly string[], upMs: number): Promise<DeployTrial> {
  const table = await ctx.tables.keeperTable('deploy', tasks);
  const ledger = new DeployLedger();
  const cluster = new KeeperCluster({ endpoint: ctx.endpoint, table, meter: new CapacityMeter(keeperRequestLabel), ledger, settings: {} });
  const version = (v: string): Partial<KeeperOptions> => (versions ? { appVersion: v } : {});
  const old = Array.from({ length: nodes }, (_, i) => `old-${i}`);
  const fresh = Array.from({ length: nodes }, (_, i) => `new-${i}`);
  try {
    await cluster.start(old, version('1'));
    await until('every task running', () => ledger.runningOnce(tasks) === tasks.length, 120_000);
    // Settled, so that the deploy starts from a balanced cluster: no start for longer than
    // rebalancing holds a moved task (10 periods), at most 90 s.
    const quietMs = 12 * resolveConfig({}).periodMs;
    const settleBy = performance.now() + 90_000;
    while (performance.now() - ledger.lastStart < quietMs && performance.now() < settleBy) await sleep(200);

    const from = performance.now();
    if (pattern === 'one at a time') {
      for (const [i, id] of fresh.entries()) {
        await cluster.start([id], version('2'));
        await sleep(upMs); // the orchestrator's health check before it stops an old worker
        await cluster.stop(old[i]!);
      }
    } else {
      await cluster.start(fresh, version('2'));
      await sleep(upMs);
      await Promise.all(old.map((id) => cluster.stop(id)));
    }
    const to = performance.now();
    await until('every task running after the deploy', () => ledger.runningOnce(tasks) === tasks.length, 60_000);
    await sleep(afterMs - (performance.now() - to));

    const perTask = new Map<string, number>();
    const gaps: number[] = [];
    const stoppedAt = new Map<string, number>();
    let startsAfter = 0;
    for (const e of ledger.events) {
      if (e.at < from) continue;
      if (e.kind === 'stop') {
        stoppedAt.set(e.task, e.at);
        continue;
      }
      if (e.at > to) startsAfter += 1;
      else perTask.set(e.task, (perTask.get(e.task) ?? 0) + 1);
      const stop = stoppedAt.get(e.task);
      if (stop !== undefined) gaps.push(e.at - stop);
      stoppedAt.delete(e.task);
    }
    const starts = [...perTask.values()].reduce((a, b) => a + b, 0);
    return { starts, maxStarts: Math.max(0, ...perTask.values()), gaps, startsAfter, overlaps: ledger.overlaps, deployMs: to - from };
  } finally {
    await cluster.close();
    await ctx.tables.drop(table);
  }
}

export async function measureDeploy(ctx: BenchContext): Promise<DeployData> {
  const nodes = ctx.quick ? 4 : 6;
  const taskCount = ctx.quick ? 120 : 300;
  const trials = ctx.quick ? 1 : 3;
  const periodMs = resolveConfig({}).periodMs;
  // ECS counts a new worker healthy at its first check after the join (every 5 s at most).
  const upMs = ctx.quick ? 2 * periodMs : 5000;
  const tasks = taskIds(taskCount);
  ctx.log(`deploy: ${nodes} workers replaced, ${taskCount} tasks, ${trials} trials per series`);
  const series: DeploySeries[] = [];
  for (const versions of [true, false]) {
    for (const pattern of ['one at a time', '200 %'] as const) {
      const label = `${pattern}, ${versions ? 'with appVersion' : 'no appVersion'}`;
      const s: DeploySeries = { label, pattern, versions, tasks: taskCount, nodes, trials: [] };
      for (let i = 0; i < trials; i++) {
        s.trials.push(await trial(ctx, pattern, versions, nodes, tasks, upMs));
        const t = s.trials.at(-1)!;
        ctx.log(`  ${label}: ${(t.starts / taskCount).toFixed(2)} starts per task (max ${t.maxStarts}), gap p99 ${Math.round(percentile(t.gaps, 99))} ms, max ${Math.round(Math.max(0, ...t.gaps))} ms, ${t.startsAfter} starts after`);
      }
      series.push(s);
    }
  }
  return { targetMs, afterMs, periodMs, series };
}

/** The report section, from measured (or recorded) data alone. */
export function renderDeploy(data: DeployData): SectionReport {
  const { targetMs, afterMs } = data;
  const gapsOf = (s: DeploySeries) => s.trials.flatMap((t) => t.gaps);
  const p99 = (s: DeploySeries) => percentile(gapsOf(s), 99);
  const meets = (s: DeploySeries) => (gapsOf(s).length === 0 ? undefined : p99(s) <= targetMs && s.trials.every((t) => t.maxStarts <= 1 && t.startsAfter === 0));
  const rows = data.series.map((s) => {
    const starts = s.trials.map((t) => t.starts / s.tasks);
    return [
      s.label,
      `${s.nodes} -> ${s.nodes}`,
      count(s.tasks),
      String(s.trials.length),
      `${(starts.reduce((a, b) => a + b, 0) / Math.max(1, starts.length)).toFixed(2)} (max ${Math.max(0, ...s.trials.map((t) => t.maxStarts))})`,
      `${seconds(percentile(gapsOf(s), 50))} / ${seconds(p99(s))} / ${seconds(Math.max(0, ...gapsOf(s)))}`,
      s.trials.map((t) => String(t.startsAfter)).join(', '),
      String(s.trials.reduce((a, t) => a + t.overlaps, 0)),
      verdict(meets(s)),
    ];
  });
  const body = [
    `Every worker of a cluster replaced, at default settings (P = ${seconds(data.periodMs)}), the two ways ECS does it: one at a time (start a new worker, wait until it would pass its health check, stop an old one) and 200 % (every new worker starts, then every old one gets SIGTERM at once). "Starts per task" counts the handler starts from the first new worker's start until the last old worker had left (ideal: 1.00, max 1); "without a runner" is every stretch from a task's stop to its next start anywhere in that window (median / p99 / max); "starts after" counts starts in the ${seconds(afterMs)} after it, per trial (ideal: 0). With appVersion the old and new workers publish different versions (KeeperCluster sets KEEPER_APP_VERSION from the image); without it, only the leaving flag tells them apart.`,
    '',
    table(['series', 'workers', 'tasks', 'trials', 'starts per task (mean, max)', 'without a runner (median / p99 / max)', 'starts after', 'two runners', `issue target (once each, p99 <= ${targetMs} ms)`], rows),
  ].join('\n');
  const misses = data.series
    .filter((s) => s.versions && meets(s) === false)
    .map((s) => `Deploy (${s.label}): ${(s.trials.reduce((a, t) => a + t.starts, 0) / (s.tasks * s.trials.length)).toFixed(2)} starts per task, gap p99 ${seconds(p99(s))}, ${s.trials.map((t) => t.startsAfter).join(', ')} starts after, against once each with p99 <= ${targetMs} ms.`);
  return {
    id: 'deploy',
    title: 'Deploys',
    body,
    charts: [],
    headline: data.series
      .filter((s) => s.versions)
      .map((s) => ({
        figure: `Deploy, ${s.label}: starts per task, longest p99 without a runner`,
        keeper: `${(s.trials.reduce((a, t) => a + t.starts, 0) / (s.tasks * s.trials.length)).toFixed(2)}, ${seconds(p99(s))}`,
        baseline: '-',
        ratio: 'n/a',
        target: `1.00, p99 <= ${targetMs} ms`,
        verdict: verdict(meets(s)),
      })),
    misses,
    data,
  };
}

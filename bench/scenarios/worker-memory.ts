import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { createDynamoClient, documentClient } from '../../lib/store/client.js';
import { DynamoStore } from '../../lib/store/dynamo-store.js';
import { colors, lineChart } from '../charts.js';
import type { BenchContext, SectionReport } from '../context.js';
import { loadSample, rssKiB, type LoadSample } from '../machine.js';
import { track } from '../processes.js';
import { amount, ratio, table, verdict } from '../report.js';
import { sleepMs, waitUntil } from '../run-ledger.js';
import { summarize } from '../stats.js';
import { taskIds } from '../tables.js';

/**
 * Scenario 5, worker memory: a real worker process (`node bin/keeper.js worker`, built-in demo
 * handler: a 100 ms loop per task) owning 1,000 tasks alone, its resident set size read from
 * /proc/<pid>/status once a second for a minute. The same for one baseline worker process
 * holding 1,000 locks and running the same demo handler. Issue target: keeper <= 100 MB.
 */
const targetMiB = 100;

export interface ProcessSample {
  label: string;
  samples: Array<[number, number]>;
  ownedAt?: number;
  problem?: string;
  load: LoadSample;
}

async function sampleRss(pid: number, durationMs: number): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  const start = performance.now();
  while (performance.now() - start < durationMs) {
    const kib = rssKiB(pid);
    if (kib === undefined) break;
    out.push([Math.round((performance.now() - start) / 1000), kib / 1024]);
    await sleepMs(1000);
  }
  return out;
}

async function stopChild(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export interface MemoryData {
  taskCount: number;
  sampleMs: number;
  results: ProcessSample[];
}

export async function measureMemory(ctx: BenchContext): Promise<MemoryData> {
  const taskCount = ctx.quick ? 200 : 1000;
  const sampleMs = ctx.quick ? 10_000 : 60_000;
  const env = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  ctx.log(`worker memory: one process owning ${taskCount} tasks, RSS sampled for ${sampleMs / 1000} s`);

  // bin/keeper.js runs dist/: build it from the current source first.
  const built = spawnSync('npm', ['run', 'build'], { encoding: 'utf8', env });
  if (built.status !== 0) throw new Error(`npm run build failed; the memory scenario needs dist/:\n${built.stdout}${built.stderr}`);

  const tasks = taskIds(taskCount);
  const results: ProcessSample[] = [];

  // keeper: the real CLI worker.
  {
    const load = loadSample(ctx.ownPids);
    const tableName = await ctx.tables.keeperTable('memory-keeper', tasks);
    const child = track(spawn(process.execPath, ['bin/keeper.js', 'worker', '--table', tableName, '--endpoint', ctx.endpoint, '--node-id', 'mem-keeper'], { env, stdio: ['ignore', 'ignore', 'ignore'] }));
    ctx.ownPids.add(child.pid!);
    const client = createDynamoClient({ endpoint: ctx.endpoint, requestTimeoutMs: 10_000 });
    const store = new DynamoStore({ client: documentClient(client), table: tableName, requestTimeoutMs: 10_000 });
    const began = performance.now();
    const owned = await waitUntil(async () => (await store.tasksOwnedBy('mem-keeper')).length === taskCount, 120_000, 1000);
    client.destroy();
    const sample: ProcessSample = { label: `keeper (bin/keeper.js worker), ${taskCount} tasks`, samples: [], load };
    if (!owned) sample.problem = `did not own all ${taskCount} tasks within 120 s`;
    else sample.ownedAt = performance.now() - began;
    sample.samples = await sampleRss(child.pid!, sampleMs);
    await stopChild(child);
    await ctx.tables.drop(tableName);
    results.push(sample);
    ctx.log(`  keeper process: median RSS ${amount(summarize(sample.samples.map((s) => s[1])).median)} MiB`);
  }

  // Baseline: one lock worker process, bundled from bench/lock-worker-process.ts.
  {
    const load = loadSample(ctx.ownPids);
    const outDir = join(process.cwd(), 'reports', '.build');
    mkdirSync(outDir, { recursive: true });
    const entry = join(outDir, 'lock-worker-process.mjs');
    await build({ entryPoints: [join(process.cwd(), 'bench', 'lock-worker-process.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile: entry, logLevel: 'error' });
    const tableName = await ctx.tables.lockTable('memory-lock');
    const child = track(spawn(process.execPath, [entry, ctx.endpoint, tableName, String(taskCount)], { env, stdio: ['ignore', 'pipe', 'ignore'] }));
    ctx.ownPids.add(child.pid!);
    let held = 0;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        held = (JSON.parse(line) as { held: number }).held;
      } catch {
        // not a progress line
      }
    });
    const began = performance.now();
    const owned = await waitUntil(() => held === taskCount, 120_000, 500);
    const sample: ProcessSample = { label: `lock per task (bundled worker), ${taskCount} locks`, samples: [], load };
    if (!owned) sample.problem = `held ${held} of ${taskCount} locks after 120 s`;
    else sample.ownedAt = performance.now() - began;
    sample.samples = await sampleRss(child.pid!, sampleMs);
    await stopChild(child);
    await ctx.tables.drop(tableName);
    results.push(sample);
    ctx.log(`  baseline process: median RSS ${amount(summarize(sample.samples.map((s) => s[1])).median)} MiB`);
  }

  return { taskCount, sampleMs, results };
}

/** The report section, from measured (or recorded) data alone. */
export function renderMemory(data: MemoryData): SectionReport {
  const { taskCount, sampleMs, results } = data;
  const [keeper, baseline] = results as [ProcessSample, ProcessSample];
  const stats = (s: ProcessSample) => summarize(s.samples.map((p) => p[1]));
  const met = keeper.problem ? undefined : stats(keeper).max <= targetMiB;
  const body = [
    `Each process runs alone against its own table with ${taskCount} demo tasks (keeper's built-in handler: a 100 ms loop per task); sampling starts once it owns every task, one sample a second for ${sampleMs / 1000} s. RSS is VmRSS from /proc/<pid>/status (MiB = 2^20 bytes). The baseline process is bench/lock-worker-process.ts bundled by esbuild (dependencies loaded from node_modules, as dist/ loads them) and run with plain node.`,
    '',
    table(['process', 'owned all after', 'samples', 'RSS median (MiB)', 'RSS max (MiB)', 'load at start', 'note'], results.map((s) => [
      s.label,
      s.ownedAt === undefined ? '-' : `${(s.ownedAt / 1000).toFixed(1)} s`,
      String(s.samples.length),
      amount(stats(s).median),
      amount(stats(s).max),
      String(s.load.loadavg1),
      s.problem ?? '',
    ])),
    '',
    `**Target** (keeper worker resident memory <= ${targetMiB} MB while owning 1,000 tasks): max ${amount(stats(keeper).max)} MiB${taskCount !== 1000 ? ` with ${taskCount} tasks (quick run)` : ''}: ${verdict(met)}. Baseline / keeper (median RSS): ${ratio(stats(baseline).median, stats(keeper).median)}.`,
  ].join('\n');
  const chart = lineChart({
    title: `Worker process RSS while owning ${taskCount} tasks`,
    unit: 'RSS (MiB)',
    xUnit: 'seconds since sampling began',
    format: (v) => String(Math.round(v)),
    series: [
      { label: 'keeper worker', color: colors.keeper, points: keeper.samples },
      { label: 'lock-per-task worker', color: colors.baseline, points: baseline.samples },
    ],
  });
  return {
    id: 'memory',
    title: '5. Worker memory',
    body,
    charts: [{ file: 'bench-memory.svg', title: 'Worker memory', svg: chart }],
    headline: [{
      figure: `Worker process RSS, ${taskCount.toLocaleString('en-US')} tasks (median / max over ${sampleMs / 1000} s)`,
      keeper: `${amount(stats(keeper).median)} / ${amount(stats(keeper).max)} MiB`,
      baseline: `${amount(stats(baseline).median)} / ${amount(stats(baseline).max)} MiB`,
      ratio: ratio(stats(baseline).median, stats(keeper).median),
      target: `<= ${targetMiB} MB`,
      verdict: verdict(met),
    }],
    misses: met === false ? [`Worker memory: keeper process RSS max ${amount(stats(keeper).max)} MiB (median ${amount(stats(keeper).median)}) with ${taskCount} tasks; target <= ${targetMiB} MB.`] : [],
    data,
  };
}

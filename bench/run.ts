import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalDb, type LocalDb } from '../lib/local-db.js';
import type { BenchContext, SectionReport } from './context.js';
import { seededRandom } from './context.js';
import { loadSample, machineInfo, measuredCode, type LoadSample } from './machine.js';
import { killSpawned, spawnedPids } from './processes.js';
import { renderReadmeSection, renderReport, type RunRecord } from './render.js';
import { BenchTables } from './tables.js';
import { warmUp } from './warm-up.js';
import { readRecordedRun } from './recorded.js';
import { measureCrash, renderCrash } from './scenarios/crash-takeover.js';
import { measureLeave, renderLeave } from './scenarios/graceful-leave.js';
import { measureDeploy, renderDeploy } from './scenarios/deploy.js';
import { measureCost, renderCost } from './scenarios/steady-cost.js';
import { measureScale, renderScale } from './scenarios/scale.js';
import { measureMemory, renderMemory } from './scenarios/worker-memory.js';

/**
 * `npm run bench [-- --quick] [-- --only <scenario>[,<scenario>]]`
 *
 * Starts its own DynamoDB Local (in memory), runs the scenarios one after another (each
 * system's trials back to back, so keeper and the baseline see the same machine), and writes
 * reports/bench.md, reports/bench.json (every measurement), reports/readme-benchmarks.md and
 * one SVG chart per scenario into reports/.
 *
 * `npm run bench -- --render reports/bench.json` writes the report again from a recorded run.
 */
interface Scenario {
  measure(ctx: BenchContext): Promise<unknown>;
  render(data: unknown): SectionReport;
}

const scenarios: Record<string, Scenario> = {
  crash: { measure: measureCrash, render: (d) => renderCrash(d as Parameters<typeof renderCrash>[0]) },
  leave: { measure: measureLeave, render: (d) => renderLeave(d as Parameters<typeof renderLeave>[0]) },
  deploy: { measure: measureDeploy, render: (d) => renderDeploy(d as Parameters<typeof renderDeploy>[0]) },
  cost: { measure: measureCost, render: (d) => renderCost(d as Parameters<typeof renderCost>[0]) },
  scale: { measure: measureScale, render: (d) => renderScale(d as Parameters<typeof renderScale>[0]) },
  memory: { measure: measureMemory, render: (d) => renderMemory(d as Parameters<typeof renderMemory>[0]) },
};

function parseArgs(argv: string[]): { quick: boolean; only: string[]; seed: number; render?: string } {
  let quick = false;
  let render: string | undefined;
  let only = Object.keys(scenarios);
  let seed = 20_240_605;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      only = (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = only.filter((s) => !(s in scenarios));
      if (unknown.length > 0 || only.length === 0) usage(`unknown scenario "${unknown.join(', ') || value}"; choose from ${Object.keys(scenarios).join(', ')}`);
    } else if (arg === '--seed' || arg.startsWith('--seed=')) {
      seed = Number(arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i]);
      if (!Number.isInteger(seed)) usage('--seed must be a whole number');
    } else if (arg === '--render' || arg.startsWith('--render=')) {
      render = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
      if (!render) usage('--render needs the path of a bench.json');
    } else if (arg === '--help' || arg === '-h') {
      usage();
    } else usage(`unknown option "${arg}"`);
  }
  return { quick, only, seed, ...(render ? { render } : {}) };
}

function usage(problem?: string): never {
  if (problem) process.stderr.write(`bench: ${problem}\n`);
  process.stderr.write(`usage: npm run bench -- [--quick] [--only ${Object.keys(scenarios).join('|')}[,...]] [--seed N]\n       npm run bench -- --render reports/bench.json\n`);
  process.exit(problem ? 2 : 0);
}

/** Writes bench.md, bench.json, the README section and the charts for the sections so far. */
function writeReports(reports: string, record: RunRecord, sections: Array<{ id: string; data: unknown }>): void {
  writeFileSync(join(reports, 'bench.md'), renderReport(record).markdown);
  writeFileSync(join(reports, 'readme-benchmarks.md'), renderReadmeSection(record));
  const { machine, code, startedAt, finishedAt, quick, only, seed, loads } = record;
  writeFileSync(join(reports, 'bench.json'), `${JSON.stringify({ machine, code, startedAt, finishedAt, quick, only, seed, loads, sections }, null, 1)}\n`);
  for (const section of record.sections) for (const chart of section.charts) writeFileSync(join(reports, chart.file), chart.svg);
}

/** `--render`: the report of a recorded run, from its measurements. */
function rerender(path: string, reports: string): number {
  mkdirSync(reports, { recursive: true });
  const run = readRecordedRun(path);
  const sections = run.sections.filter((s) => s.id in scenarios);
  const record: RunRecord = {
    machine: run.machine,
    code: run.code,
    startedAt: new Date(run.startedAt),
    finishedAt: new Date(run.finishedAt),
    quick: run.quick,
    only: run.only,
    seed: run.seed,
    loads: run.loads,
    endpoint: '',
    sections: sections.map((s) => scenarios[s.id]!.render(s.data)),
  };
  writeReports(reports, record, sections);
  process.stdout.write(`rendered ${sections.map((s) => s.id).join(', ')} from ${path} into ${reports}\n`);
  return 0;
}

async function main(): Promise<number> {
  const { quick, only, seed, render } = parseArgs(process.argv.slice(2));
  if (render) return rerender(render, join(process.cwd(), 'reports'));
  // The SDK's notice about Node 20 support says nothing about the figures; keep the log readable.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const reports = join(process.cwd(), 'reports');
  mkdirSync(reports, { recursive: true });
  const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  const machine = machineInfo();
  const code = measuredCode();
  const startedAt = new Date();
  let db: LocalDb | undefined;
  const cleanup = async () => {
    killSpawned();
    await db?.stop().catch(() => {});
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping DynamoDB Local and every worker process started by the bench`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    db = await startLocalDb();
    const ownPids = spawnedPids();
    ownPids.add(db.process.pid!);
    const tables = new BenchTables(db.endpoint);
    const ctx: BenchContext = { endpoint: db.endpoint, dbPid: db.process.pid!, tables, quick, random: seededRandom(seed), log, ownPids, saturated: new Map() };
    log(`DynamoDB Local ${machine.dynamoDbLocal} at ${db.endpoint}; ${machine.cores} x ${machine.cpuModel}; ${quick ? 'quick' : 'full'} run of ${only.join(', ')}`);
    await warmUp(ctx);
    const sections: SectionReport[] = [];
    const measured: Array<{ id: string; data: unknown }> = [];
    const loads: Array<{ scenario: string; load: LoadSample }> = [];
    for (const name of only) {
      loads.push({ scenario: name, load: loadSample(ownPids) });
      const began = performance.now();
      const data = await scenarios[name]!.measure(ctx);
      measured.push({ id: name, data });
      sections.push(scenarios[name]!.render(data));
      log(`${name} done in ${((performance.now() - began) / 1000).toFixed(0)} s`);
      // Written after every scenario, so a later failure keeps what was measured.
      writeReports(reports, { machine, startedAt, finishedAt: new Date(), quick, only, seed, sections, loads, endpoint: db.endpoint, code }, measured);
    }
    tables.close();
    log(`wrote ${join(reports, 'bench.md')}`);
    return 0;
  } catch (error) {
    log(`bench failed: ${(error as Error).stack ?? String(error)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exit(await main());

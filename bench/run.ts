import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalDb, type LocalDb } from '../lib/local-db.js';
import type { BenchContext, SectionReport } from './context.js';
import { seededRandom } from './context.js';
import { loadSample, machineInfo, measuredCode, type LoadSample } from './machine.js';
import { killSpawned, spawnedPids } from './processes.js';
import { renderReadmeSection, renderReport } from './render.js';
import { BenchTables } from './tables.js';
import { warmUp } from './warm-up.js';
import { crashTakeover } from './scenarios/crash-takeover.js';
import { gracefulLeave } from './scenarios/graceful-leave.js';
import { steadyCost } from './scenarios/steady-cost.js';
import { scale } from './scenarios/scale.js';
import { workerMemory } from './scenarios/worker-memory.js';

/**
 * `npm run bench [-- --quick] [-- --only <scenario>[,<scenario>]]`
 *
 * Starts its own DynamoDB Local (in memory), runs the scenarios one after another (each
 * system's trials back to back, so keeper and the baseline see the same machine), and writes
 * reports/bench.md, reports/bench.json and one SVG chart per scenario into reports/.
 */
const scenarios: Record<string, (ctx: BenchContext) => Promise<SectionReport>> = {
  crash: crashTakeover,
  leave: gracefulLeave,
  cost: steadyCost,
  scale,
  memory: workerMemory,
};

function parseArgs(argv: string[]): { quick: boolean; only: string[]; seed: number } {
  let quick = false;
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
    } else if (arg === '--help' || arg === '-h') {
      usage();
    } else usage(`unknown option "${arg}"`);
  }
  return { quick, only, seed };
}

function usage(problem?: string): never {
  if (problem) process.stderr.write(`bench: ${problem}\n`);
  process.stderr.write(`usage: npm run bench -- [--quick] [--only ${Object.keys(scenarios).join('|')}[,...]] [--seed N]\n`);
  process.exit(problem ? 2 : 0);
}

async function main(): Promise<number> {
  const { quick, only, seed } = parseArgs(process.argv.slice(2));
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
    const loads: Array<{ scenario: string; load: LoadSample }> = [];
    for (const name of only) {
      loads.push({ scenario: name, load: loadSample(ownPids) });
      const began = performance.now();
      sections.push(await scenarios[name]!(ctx));
      log(`${name} done in ${((performance.now() - began) / 1000).toFixed(0)} s`);
      // Written after every scenario, so a later failure keeps what was measured.
      const record = { machine, startedAt, finishedAt: new Date(), quick, only, seed, sections, loads, endpoint: db.endpoint, code };
      const rendered = renderReport(record);
      writeFileSync(join(reports, 'bench.md'), rendered.markdown);
      writeFileSync(join(reports, 'readme-benchmarks.md'), renderReadmeSection(record));
      writeFileSync(join(reports, 'bench.json'), `${JSON.stringify({ machine, code, startedAt, quick, only, seed, loads, sections: sections.map((s) => ({ id: s.id, headline: s.headline, misses: s.misses, data: s.data })) }, null, 1)}\n`);
      for (const section of sections) for (const chart of section.charts) writeFileSync(join(reports, chart.file), chart.svg);
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

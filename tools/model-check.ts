import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Checks the Promela model of the protocol (model/keeper.pml) with SPIN: the correct model
 * against every claim, and each broken variant against the claim it must violate, with the
 * counterexample replayed. docs/model.md explains the model and lists the figures.
 *
 *   npx tsx tools/model-check.ts            the small configuration (what npm test runs)
 *   npx tsx tools/model-check.ts --large    two faults of any kind, and three nodes: by hand, minutes
 *   npx tsx tools/model-check.ts --only FENCE_FROM_REPLY,correct   some checks only (variant names)
 *   npx tsx tools/model-check.ts --stories  print each counterexample as the model tells it
 *   npx tsx tools/model-check.ts --keep     leave the build directories (pan.c, trails) in the temp dir
 *
 * Every build happens in a fresh directory under the OS temp dir: nothing is written to the
 * repository.
 */

export type Claim = 'one_runner' | 'tokens_grow' | 'declare_on_observed' | 'orphans_owned';

/** Liveness claims need acceptance-cycle search under weak fairness; the others are safety. */
export const livenessClaims: ReadonlySet<Claim> = new Set(['orphans_owned']);

export interface Check {
  /** 'correct' for the model as the code is, else the variant's switch. */
  variant: string;
  claim: Claim;
  expect: 'holds' | 'violated';
  /** The faults the search may inject (see faultSets). */
  faults: keyof typeof faultSets;
  /** Preprocessor switches: the variant's, and the model's size. */
  defines: string[];
  /** pan's depth limit; a violation deeper than this is not looked for (keeps counterexamples short). */
  depth?: number;  /** Store states compressed: larger searches within pan's memory limit. */
  collapse?: boolean;
}

export interface Configuration {
  name: 'small' | 'large';
  checks: Check[];
}

export interface Result {
  check: Check;
  errors: number;
  statesStored: number;
  depth: number;
  /** pan's own search time. */
  seconds: number;
  /** Whether pan searched everything it had to (no depth limit hit, no memory cut). */
  complete: boolean;
  /** Steps of the replayed counterexample, with the model's own account of it (printf lines, tick-numbered). */
  trail?: { steps: number; story: string[] };
  ok: boolean;
  /** Why a check did not come out as expected. */
  problem?: string;
}

const claims: Claim[] = ['one_runner', 'tokens_grow', 'declare_on_observed', 'orphans_owned'];

/**
 * What the search may inject. Every kind of fault at most once in a run, or two at most of
 * one kind: freezes, the fault a zombie needs (a frozen node is declared dead and rejoins)
 * while another node freezes in turn.
 */
export const faultSets = {
  none: ['-DFAULTS=0'],
  any1: ['-DFAULTS=1'],
  any2: ['-DFAULTS=2'],
  freezes2: ['-DFAULTS=2', '-DNO_CRASH', '-DNO_LEAVE', '-DNO_RELEASE', '-DNO_LOST', '-DNO_TXLOSS'],
} as const;

/** The broken variants: each breaks one rule of the protocol and must violate the claim that rule protects. */
export const variants: Array<{ variant: string; claim: Claim; faults: keyof typeof faultSets; depth?: number }> = [
  { variant: 'SWEEP_READS_NODE_FIRST', claim: 'one_runner', faults: 'any1' },
  { variant: 'FENCE_FROM_REPLY', claim: 'one_runner', faults: 'any1' },
  { variant: 'LOOSE_BOUND', claim: 'one_runner', faults: 'freezes2', depth: 6000 },
  { variant: 'CODE_BOUND', claim: 'one_runner', faults: 'any1' },
  { variant: 'MOVE_WITHOUT_TOKEN', claim: 'tokens_grow', faults: 'any1' },
  { variant: 'DECLARE_WITHOUT_COUNTER', claim: 'declare_on_observed', faults: 'any1' },
  { variant: 'OWN_COUNTER_IGNORED', claim: 'orphans_owned', faults: 'any1' },
];

const correct = (nodes: number, faults: keyof typeof faultSets, collapse = false): Check[] =>
  claims.map((claim) => ({ variant: 'correct', claim, expect: 'holds', faults, defines: [`-DNODES=${nodes}`], ...(collapse ? { collapse } : {}) }));

const broken = (nodes: number, faults?: keyof typeof faultSets): Check[] =>
  variants.map((v) => ({
    variant: v.variant,
    claim: v.claim,
    expect: 'violated',
    faults: faults ?? v.faults,
    defines: [`-DNODES=${nodes}`, `-D${v.variant}`],
    ...(v.depth ? { depth: v.depth } : {}),
  }));

/**
 * small: what npm test runs, about 1.5 minutes. large: two faults of any kind (the variants
 * too), and three nodes without faults (three clocks, three claimants of a pool task); three
 * nodes with a fault do not fit in pan's 4 GB (docs/model.md, Limits).
 */
export const configurations: Record<'small' | 'large', Configuration> = {
  small: { name: 'small', checks: [...correct(2, 'any1'), ...correct(2, 'freezes2'), ...broken(2)] },
  large: { name: 'large', checks: [...correct(2, 'any2', true), ...correct(3, 'none', true), ...broken(2, 'any2')] },
};

const modelFile = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'model', 'keeper.pml');

/** Whether the spin command is on PATH. */
export function spinAvailable(): boolean {
  return spawnSync('spin', ['-V'], { encoding: 'utf8' }).status === 0;
}

export const spinMissing = 'spin not found on PATH: install SPIN 6.5 (Debian/Ubuntu: sudo apt-get install spin) to check the model';

function run(command: string, args: string[], cwd: string): string {
  const out = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  if (out.error) throw out.error;
  const text = `${out.stdout}${out.stderr}`;
  // pan (run under nice) may exit non-zero when it finds a counterexample: that is an answer, read from its output.
  if (out.status !== 0 && command !== 'nice') throw new Error(`${command} ${args.join(' ')} exited ${out.status}:\n${text.slice(-2000)}`);
  return text;
}

const number = (text: string, pattern: RegExp): number => {
  const match = pattern.exec(text);
  return match ? Number(match[1]) : Number.NaN;
};

/** The model's printf account of a counterexample, one line per event, each with the tick it happened at. */
export function story(replay: string): string[] {
  const lines: string[] = [];
  let tick = 0;
  for (const raw of replay.split('\n')) {
    const line = raw.trim();
    if (line === 'tick') {
      tick += 1;
      continue;
    }
    if (/^(node|task) /.test(line)) lines.push(`t${tick}: ${line}`);
  }
  return lines;
}

/**
 * Compiles the model once for a set of checks that share their switches, and runs pan for
 * each claim. Safety-only builds get -DSAFETY; a build that also checks the liveness claim
 * needs weak fairness over all its processes (2 per node, the world, init: -DNFAIR=3 allows 14).
 */
function runBuild(checks: Check[], keep: boolean, onResult: (r: Result) => void): Result[] {
  const dir = mkdtempSync(join(tmpdir(), 'keeper-model-'));
  try {
    copyFileSync(modelFile, join(dir, 'keeper.pml'));
    const defines = [...checks[0]!.defines, ...faultSets[checks[0]!.faults]];
    const liveness = checks.some((c) => livenessClaims.has(c.claim));
    run('spin', [...defines, '-a', 'keeper.pml'], dir);
    // The machine is shared: pan stops at 4 GB rather than grow (MEMLIM), and the large
    // configuration stores states compressed (COLLAPSE), trading time for memory.
    const memory = ['-DMEMLIM=4000', ...(checks[0]!.collapse ? ['-DCOLLAPSE'] : [])];
    run('gcc', ['-w', '-O2', liveness ? '-DNFAIR=3' : '-DSAFETY', ...memory, '-o', 'pan', 'pan.c'], dir);
    return checks.map((check) => {
      rmSync(join(dir, 'keeper.pml.trail'), { force: true });
      const panArgs = [`-m${check.depth ?? 1_000_000}`, ...(livenessClaims.has(check.claim) ? ['-a', '-f'] : []), '-N', check.claim];
      const output = run('nice', ['-n', '10', './pan', ...panArgs], dir);
      writeFileSync(join(dir, `pan-${check.claim}.out`), output);
      const result = judge(check, output, dir, defines);
      onResult(result);
      return result;
    });
  } finally {
    if (keep) process.stderr.write(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

function judge(check: Check, output: string, dir: string, defines: string[]): Result {
  const errors = number(output, /errors: (\d+)/);
  const result: Result = {
    check,
    errors,
    statesStored: number(output, /([\d.e+]+) states, stored/),
    depth: number(output, /depth reached (\d+)/),
    seconds: number(output, /elapsed time ([\d.e+]+) seconds/),
    complete: !/max search depth too small|Search not completed|out of memory|MEMLIM/i.test(output),
    ok: false,
  };
  if (!Number.isFinite(errors)) {
    result.problem = `pan's output not understood:\n${output.slice(-1500)}`;
    return result;
  }
  if (errors > 0 && existsSync(join(dir, 'keeper.pml.trail'))) {
    // spin takes the claim from the trail; printf lines tell the story.
    const replay = run('spin', ['-t', ...defines, 'keeper.pml'], dir);
    result.trail = { steps: number(replay, /trail ends after (\d+) steps/), story: story(replay) };
  }
  if (check.expect === 'holds') {
    result.ok = errors === 0 && result.complete;
    if (!result.ok) result.problem = errors > 0 ? `${check.claim} violated` : 'search incomplete';
  } else {
    result.ok = errors > 0 && (result.trail?.steps ?? 0) > 0 && (result.trail?.story.length ?? 0) > 0;
    if (!result.ok) result.problem = errors > 0 ? 'no counterexample trail to replay' : `${check.claim} not violated`;
  }
  return result;
}

/** Runs every check of a configuration, one build per set of switches. */
export function runConfiguration(config: Configuration, onResult: (r: Result) => void = () => {}, keep = false): Result[] {
  const builds = new Map<string, Check[]>();
  for (const check of config.checks) {
    const key = [...check.defines, check.faults].join(' ');
    builds.set(key, [...(builds.get(key) ?? []), check]);
  }
  return [...builds.values()].flatMap((checks) => runBuild(checks, keep, onResult));
}

export function formatResult(r: Result): string {
  const size = r.check.defines.find((d) => d.startsWith('-DNODES='))?.slice('-DNODES='.length) ?? '?';
  const what = `${r.check.variant.padEnd(24)} ${r.check.claim.padEnd(20)} ${size} nodes, faults ${r.check.faults.padEnd(8)}`;
  const verdict = r.errors > 0 ? 'violated' : 'holds';
  const figures = `${String(r.statesStored).padStart(10)} states, depth ${String(r.depth).padStart(6)}, ${r.seconds.toFixed(2).padStart(6)} s`;
  const trail = r.trail ? `, trail ${r.trail.steps} steps` : '';
  return `${r.ok ? 'ok  ' : 'FAIL'} ${what} ${verdict.padEnd(8)} ${figures}${trail}${r.problem ? ` (${r.problem})` : ''}`;
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  if (!spinAvailable()) {
    process.stderr.write(`${spinMissing}\n`);
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const chosen = args.includes('--large') ? configurations.large : configurations.small;
  const only = args.includes('--only') ? new Set((args[args.indexOf('--only') + 1] ?? '').split(',')) : undefined;
  const config = { ...chosen, checks: chosen.checks.filter((c) => !only || only.has(c.variant)) };
  const keep = args.includes('--keep');
  const started = performance.now();
  process.stdout.write(`model/keeper.pml, ${config.name} configuration\n`);
  const results = runConfiguration(config, (r) => {
    process.stdout.write(`${formatResult(r)}\n`);
    if (r.trail && args.includes('--stories')) for (const line of r.trail.story) process.stdout.write(`       ${line}\n`);
  }, keep);
  const states = results.reduce((sum, r) => sum + r.statesStored, 0);
  process.stdout.write(`${results.length} checks, ${states} states stored in all, ${((performance.now() - started) / 1000).toFixed(1)} s wall\n`);
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { allKinds, type TimedKind } from './schedule.js';

/**
 * The `npm run chaos` command line. Nonsense is refused with one line (exit code 2) before
 * anything starts: the harness spawns Java and a dozen processes, and a typo should not cost
 * a minute of start-up to find out.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface ChaosOptions {
  /** Length of the fault phase, from the moment every initial worker has joined. */
  seconds: number;
  workers: number;
  tasks: number;
  seed: number;
  /** Faults of each kind; undefined: as many as fit into `seconds`. */
  faults: number | undefined;
  periodMs: number;
  /** Per-request timeout d of the workers; undefined: half a period (see harness.ts). */
  requestTimeoutMs: number | undefined;
  out: string | undefined;
  /**
   * The keeper tree whose bin/ and dist/ the workers run (default: this checkout). Lets a run
   * test a commit exported and built elsewhere while the checkout is being edited.
   */
  keeper?: string | undefined;
  /**
   * Finite `demo-job` tasks: half of them created with the long-running ones, the rest added
   * over the fault phase, so that faults meet some mid-run. 0 (default): none, and the run is
   * what it was before finite tasks existed.
   */
  finiteTasks?: number;
  /** The timed fault kinds to plan; undefined: the default mix (`defaultKinds` of schedule.ts), which leaves out the opt-in ones. */
  kinds?: readonly TimedKind[] | undefined;
}

/**
 * The period defaults to the library's 1000 ms: with eight workers and 500 tasks on two shared
 * cores, P = 500 ms keeps DynamoDB Local saturated (heartbeats time out, nodes fence, moves
 * retry, which adds load) while P = 1000 ms settles at about 17 requests per second. The test
 * runs five workers and 60 tasks at P = 500 ms to fit three faults of each kind into two
 * minutes.
 */
export const defaults = { seconds: 300, workers: 5, tasks: 60, periodMs: 1000 } as const;

export const usage =
  'usage: npm run chaos -- [--seconds N] [--workers N] [--tasks N] [--seed S] [--faults N per kind] [--period-ms P] [--request-timeout-ms D] [--out DIR] [--keeper DIR] [--finite-tasks N] [--kinds kill,pause,...,stubborn-term]';

function whole(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

export function parseChaosArgs(argv: readonly string[]): ChaosOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        seconds: { type: 'string' },
        workers: { type: 'string' },
        tasks: { type: 'string' },
        seed: { type: 'string' },
        faults: { type: 'string' },
        'period-ms': { type: 'string' },
        'request-timeout-ms': { type: 'string' },
        out: { type: 'string' },
        keeper: { type: 'string' },
        'finite-tasks': { type: 'string' },
        kinds: { type: 'string' },
      },
    }));
  } catch (error) {
    // node:util's messages are long and mention internals; keep the first sentence.
    const message = (error as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '');
    throw new UsageError(`${message}; ${usage.replace('usage: ', 'usage is ')}`);
  }
  const str = (k: string) => values[k] as string | undefined;
  const workers = whole('workers', str('workers'), 0, 64) ?? defaults.workers;
  // A fault takes a worker out while the rest must carry its tasks and judge its staleness:
  // with fewer than three there is nobody left to take over from the second victim.
  if (workers < 3) throw new UsageError(`--workers must be at least 3 (one victim at a time, and a live majority to take over), got ${workers}`);
  const tasks = whole('tasks', str('tasks'), 1, 100_000) ?? defaults.tasks;
  const seconds = whole('seconds', str('seconds'), 1, 7 * 24 * 3600) ?? defaults.seconds;
  const seed = whole('seed', str('seed'), 0, 2 ** 32 - 1) ?? Math.floor(Math.random() * 2 ** 31);
  const faults = whole('faults', str('faults'), 1, 100_000);
  const periodMs = whole('period-ms', str('period-ms'), 50, 60_000) ?? defaults.periodMs;
  const requestTimeoutMs = whole('request-timeout-ms', str('request-timeout-ms'), 1, 60_000);
  const out = str('out');
  if (out !== undefined && out.trim() === '') throw new UsageError('--out must name a directory');
  const keeper = str('keeper');
  if (keeper !== undefined && !existsSync(join(keeper, 'bin', 'keeper.js'))) throw new UsageError(`--keeper ${keeper}: no bin/keeper.js there`);
  const finiteTasks = whole('finite-tasks', str('finite-tasks'), 0, 10_000) ?? 0;
  const kinds = parseKinds(str('kinds'));
  return { seconds, workers, tasks, seed, faults, periodMs, requestTimeoutMs, out, keeper, finiteTasks, kinds };
}

/** `--kinds a,b,c`: a subset of the timed kinds, each once, in any order (planned in the canonical order). */
function parseKinds(text: string | undefined): TimedKind[] | undefined {
  if (text === undefined) return undefined;
  const names = text.split(',').map((k) => k.trim());
  const unknown = names.filter((k) => !(allKinds as readonly string[]).includes(k));
  if (names.length === 0 || unknown.length > 0) throw new UsageError(`--kinds takes a comma-separated list of ${allKinds.join(', ')}; got "${text}"`);
  if (new Set(names).size !== names.length) throw new UsageError(`--kinds names a kind twice: "${text}"`);
  return allKinds.filter((k) => names.includes(k));
}

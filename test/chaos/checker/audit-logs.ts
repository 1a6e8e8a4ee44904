import { createReadStream, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { InstanceBeingRead } from './faults.js';
import type { Interval } from './time-axis.js';

/**
 * The workers' audit logs (one JSON line per `start`, `work` and `stop` of a task run, on
 * the machine's monotonic clock) read into task runs, streamed: a long run writes gigabytes,
 * so every figure that needs single events is taken while reading.
 */
export interface Run {
  readonly instance: string;
  readonly node: string;
  readonly task: string;
  readonly token: number;
  readonly start: number;
  readonly firstWork: number;
  readonly lastWork: number;
  readonly stop: number | undefined;
  readonly works: number;
  /** Stretches of work without an internal pause longer than `segmentGapNs`. */
  readonly segments: readonly Interval[];
}

/** A finite task's side effect: the `effect` line of one run. */
export interface Effect {
  readonly instance: string;
  readonly node: string;
  readonly task: string;
  readonly token: number;
  readonly at: number;
}

export interface AuditLogs {
  /** Every run of each task (one process, one token, from its `start` line), in log order. */
  readonly runsByTask: ReadonlyMap<string, readonly Run[]>;
  /** `work` lines of a run after its own `stop` line, in the order read. */
  readonly lateWork: ReadonlyArray<{ readonly instance: string; readonly task: string; readonly token: number; readonly at: number; readonly stoppedAt: number }>;
  /** Work seen in the window after the final snapshot, per task: "node|token". */
  readonly atEnd: ReadonlyMap<string, ReadonlySet<string>>;
  /** Per worker slot, how many tasks were at work in each bucket of `bucketNs`. */
  readonly lanes: ReadonlyMap<string, readonly number[]>;
  readonly bucketNs: number;
  readonly lines: number;
  readonly malformed: number;
  readonly malformedExamples: readonly string[];
  /** Finite tasks' side effects (`effect` lines), per task, in the order read. */
  readonly effects: ReadonlyMap<string, readonly Effect[]>;
  /** Where an instance's audit timestamps went backwards. */
  readonly backwards: ReadonlyArray<{ readonly instance: string; readonly at: number }>;
}

const segmentGapNs = 1e9;

type RunBeingRead = { -readonly [K in keyof Run]: Run[K] extends readonly Interval[] ? Interval[] : Run[K] } & { segStart: number; lastBucket: number };

export async function readAuditLogs(
  instances: Iterable<InstanceBeingRead>,
  axis: { rel: (mono: string) => number; endNs: number; snapNs: number | undefined; windowNs: number },
): Promise<AuditLogs> {
  const { rel, endNs, snapNs, windowNs } = axis;
  const durationNs = Math.max(endNs, 1);
  const bucketNs = Math.max(1e9, Math.ceil(durationNs / 900 / 1e9) * 1e9);
  const buckets = Math.ceil(durationNs / bucketNs) + 1;
  const lanes = new Map<string, number[]>();
  const runsByTask = new Map<string, RunBeingRead[]>();
  const lateWork: Array<AuditLogs['lateWork'][number]> = [];
  let lines = 0;
  let malformed = 0;
  const malformedExamples: string[] = [];
  const backwards: Array<AuditLogs['backwards'][number]> = [];
  const atEnd = new Map<string, Set<string>>();
  const effects = new Map<string, Effect[]>();

  for (const inst of instances) {
    if (!existsSync(inst.auditPath)) continue;
    const lane = lanes.get(inst.slot) ?? new Array<number>(buckets).fill(0);
    lanes.set(inst.slot, lane);
    // The open run of each (task, token) in this process. Keyed by token too: when a task is
    // handed back with a new token, the old run's stop line may follow the new run's start.
    const current = new Map<string, RunBeingRead>();
    let previous = Number.NEGATIVE_INFINITY;
    const input = createReadStream(inst.auditPath, { encoding: 'utf8', highWaterMark: 1 << 20 });
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      if (line === '') continue;
      lines += 1;
      let e: { event?: unknown; task?: unknown; node?: unknown; token?: unknown; mono_ns?: unknown };
      try {
        e = JSON.parse(line) as typeof e;
      } catch {
        e = {};
      }
      if (
        (e.event !== 'start' && e.event !== 'work' && e.event !== 'stop' && e.event !== 'effect') ||
        typeof e.task !== 'string' ||
        e.node !== inst.node ||
        typeof e.token !== 'number' ||
        !Number.isInteger(e.token) ||
        typeof e.mono_ns !== 'string' ||
        !/^\d+$/.test(e.mono_ns)
      ) {
        malformed += 1;
        if (malformedExamples.length < 3) malformedExamples.push(`${inst.name}: ${line.slice(0, 160)}`);
        continue;
      }
      const t = rel(e.mono_ns);
      if (t < previous) backwards.push({ instance: inst.name, at: t });
      previous = t;
      const task = e.task;
      const token = e.token;
      const key = `${task}|${token}`;
      if (e.event === 'start') {
        const before = current.get(key);
        if (before && before.works > 0) before.segments.push({ a: before.segStart, b: before.lastWork });
        const r: RunBeingRead = { instance: inst.name, node: inst.node, task, token, start: t, firstWork: NaN, lastWork: NaN, stop: undefined, works: 0, segments: [], segStart: NaN, lastBucket: -1 };
        current.set(key, r);
        const list = runsByTask.get(task) ?? [];
        list.push(r);
        runsByTask.set(task, list);
        continue;
      }
      const r = current.get(key);
      if (!r) {
        malformed += 1;
        if (malformedExamples.length < 3) malformedExamples.push(`${inst.name}: ${e.event} of ${task} token ${token} without its start line`);
        continue;
      }
      if (e.event === 'stop') {
        r.stop ??= t;
        continue;
      }
      if (e.event === 'effect') {
        const list = effects.get(task) ?? [];
        list.push({ instance: inst.name, node: inst.node, task, token, at: t });
        effects.set(task, list);
        continue;
      }
      // work
      if (r.stop !== undefined) lateWork.push({ instance: inst.name, task, token, at: t, stoppedAt: r.stop });
      if (r.works === 0) {
        r.firstWork = t;
        r.segStart = t;
      } else if (t - r.lastWork > segmentGapNs) {
        r.segments.push({ a: r.segStart, b: r.lastWork });
        r.segStart = t;
      }
      r.lastWork = t;
      r.works += 1;
      const b = Math.floor(t / bucketNs);
      if (b >= 0 && b < buckets && b !== r.lastBucket) {
        lane[b]! += 1;
        r.lastBucket = b;
      }
      if (snapNs !== undefined && t >= snapNs && t <= snapNs + windowNs) {
        const seen = atEnd.get(task) ?? new Set<string>();
        seen.add(`${inst.node}|${token}`);
        atEnd.set(task, seen);
      }
    }
    for (const r of current.values()) if (r.works > 0) r.segments.push({ a: r.segStart, b: r.lastWork });
  }
  return { runsByTask, lateWork, atEnd, effects, lanes, bucketNs, lines, malformed, malformedExamples, backwards };
}

import { createReadStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { FaultRecord, Stamped } from './fault-log.js';

/**
 * Moves in flight at once during a takeover, as the README's failover bound states it
 * (restated, not imported: the checker stays independent of lib/): batch moves with 100
 * tasks in flight, then single moves 32 at a time for any batch that failed.
 */
const batchMovesInFlight = 100;
const moveConcurrency = 32;

/**
 * The independent checker of a chaos run. It imports nothing from lib/ and nothing that runs
 * the harness: it reads the workers' audit logs and stderr, the harness's fault log, and the
 * final table (read with plain AWS SDK calls), and judges the run by the properties the
 * protocol promises:
 *
 * Safety
 *  - No overlap. For each task, every run (one process, one token, from its `start` line)
 *    has a working span [start, last work event of that run]. A `work` event of one run
 *    inside another run's span is a violation, with 0 ns tolerance. This is the same as
 *    "the spans of two runs that both did work intersect" (if they intersect, the run that
 *    started later either has its last work inside the earlier span, or the earlier one has
 *    its last work inside the later span). The span deliberately ends at the last work
 *    event, not at the `stop` line: a SIGSTOPped or SIGKILLed owner writes its `stop` late
 *    or never, and would otherwise "overlap" with every correct takeover.
 *  - Work of a run after that run's own `stop` line.
 *  - Fencing tokens: a `work` event with a lower token later (by mono_ns) than a `work`
 *    event with a higher token, for the same task; and a table token lower than a token
 *    already seen at work.
 * Liveness
 *  - Takeover time for every task of every failed node (SIGKILL, SIGSTOP, partition): from
 *    the fault to the first `start` of that task under a newer token, unless the victim had
 *    resumed the task under its own token before (then it kept the task, and the later move
 *    is a handover). p50/p99/max against the documented failover bound; a takeover that took
 *    longer than the bound, counting the same time as for lost tasks, is a violation.
 *  - Lost tasks: a stretch without any `work` event for the task that is longer than the
 *    bound plus one work interval, counting only time in which the store was up and
 *    answering within d (the harness's own probe) and at least one worker was live
 *    (running, not paused, not partitioned, not fenced by its own account).
 *  - End state: every task created exists once in the final table, ready, owned by a node
 *    that is alive there, and is at work on that owner with the table's token.
 *  - False takeovers: see `justify` below.
 * Hygiene: a worker that exited without the harness ending it, error-level log lines,
 * malformed audit lines, faults the harness had to skip.
 */

// ------------------------------------------------------------------ the final table

export interface TableSnapshot {
  tasks: Array<Record<string, unknown>>;
  nodes: Array<Record<string, unknown>>;
  other: number;
}

/** Reads every item of the table with plain Scan calls (strongly consistent). */
export async function scanTable(endpoint: string, table: string): Promise<TableSnapshot> {
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 5 });
  const out: TableSnapshot = { tasks: [], nodes: [], other: 0 };
  try {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await client.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }));
      for (const raw of page.Items ?? []) {
        const item = unmarshall(raw);
        if (item['sk'] === 'task') out.tasks.push(item);
        else if (item['sk'] === 'node') out.nodes.push(item);
        else out.other += 1;
      }
      start = page.LastEvaluatedKey;
    } while (start);
  } finally {
    client.destroy();
  }
  return out;
}

// ------------------------------------------------------------------ result

export interface Stats {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface Violation {
  rule: string;
  text: string;
}

export interface TimelineModel {
  endMs: number;
  bucketMs: number;
  lanes: Array<{ slot: string; running: number[]; instances: Array<{ name: string; node: string; fromMs: number; toMs: number; clock: string }> }>;
  faults: Array<{ kind: string; slot?: string; fromMs: number; toMs?: number; label: string }>;
  declarations: Array<{ slot?: string; atMs: number; peer: string; by: string; justified: boolean }>;
  takeovers: Array<{ slot: string; faultMs: number; doneMs: number; tasks: number }>;
}

export interface CheckResult {
  ok: boolean;
  run: Extract<FaultRecord, { type: 'run' }>;
  phaseMs: number;
  /** Store up, yet no worker held a valid lease (all fenced by their own account). */
  brownOutMs: number;
  faults: Record<string, number>;
  skipped: number;
  counts: { auditLines: number; runs: number; instances: number; declarations: number; declaredWhileFenced: number; fenced: number; zombies: number; heartbeatFailures: number };
  takeover: Stats & { boundMs: number; formulaBoundMs: number; resumedInPlace: number; byKind: Record<string, Stats> };
  handover: Stats;
  outageResume: Stats;
  detectionMs: Stats;
  violations: {
    overlaps: Violation[];
    workAfterStop: Violation[];
    tokenRegressions: Violation[];
    slowTakeovers: Violation[];
    lostTasks: Violation[];
    endState: Violation[];
    falseTakeovers: Violation[];
    unexpectedExits: Violation[];
  };
  findings: string[];
  proxies: { requests: number; blackholed: number; throttled: number; errors500: number; droppedReplies: number };
  /** DynamoDB Local restarts after the outages, and the largest size its data reached. */
  store: { restarts: Stats; dataMb: number; slowMs: number };
  timeline: TimelineModel;
}

// ------------------------------------------------------------------ helpers

const ms = (ns: number) => ns / 1e6;
const fmt = (ns: number) => `${(ns / 1e9).toFixed(3)} s`;

export function stats(valuesMs: number[]): Stats {
  if (valuesMs.length === 0) return { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
  const sorted = [...valuesMs].sort((a, b) => a - b);
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { count: sorted.length, p50Ms: rank(0.5), p99Ms: rank(0.99), maxMs: sorted[sorted.length - 1]! };
}

interface Interval {
  a: number;
  b: number;
}

/** Merges intervals into a sorted disjoint list. */
function union(list: Interval[]): Interval[] {
  const sorted = [...list].filter((x) => x.b > x.a).sort((x, y) => x.a - y.a);
  const out: Interval[] = [];
  for (const x of sorted) {
    const last = out[out.length - 1];
    if (last && x.a <= last.b) last.b = Math.max(last.b, x.b);
    else out.push({ ...x });
  }
  return out;
}

/** Length of [a, b] not covered by the sorted disjoint `holes`. */
function measureOutside(a: number, b: number, holes: Interval[]): number {
  let total = b - a;
  for (const h of holes) {
    if (h.b <= a) continue;
    if (h.a >= b) break;
    total -= Math.min(b, h.b) - Math.max(a, h.a);
  }
  return total;
}

interface Run {
  instance: string;
  node: string;
  task: string;
  token: number;
  start: number;
  firstWork: number;
  lastWork: number;
  stop: number | undefined;
  works: number;
  /** Stretches of work without an internal pause longer than `segmentGapNs`. */
  segments: Interval[];
  segStart: number;
  lastBucket: number;
}

interface InstanceInfo {
  name: string;
  slot: string;
  node: string;
  spawn: number;
  joined: number | undefined;
  end: number | undefined;
  endKind: string | undefined;
  rate: number;
  offsetMs: number;
  auditPath: string;
  stderrPath: string;
  pauses: Interval[];
  partitions: Interval[];
  kill: number | undefined;
  term: number | undefined;
  exitUnexpected: number | undefined;
  exitCode: number | null | undefined;
  exitSignal: string | null | undefined;
  exitAt: number | undefined;
  /** When its own log says it held no valid lease: from "lease expired" or a refused heartbeat, until it renewed or rejoined. */
  fenced: Interval[];
  /** The part of `fenced` that began with "lease expired" (it could not renew), not with being declared dead. */
  leaseLost: Interval[];
}

// ------------------------------------------------------------------ the check

export async function checkRun(dirInput: string): Promise<CheckResult> {
  const dir = resolve(dirInput);
  const records = readFileSync(join(dir, 'faults.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Stamped);
  const run = records.find((r): r is Stamped<Extract<FaultRecord, { type: 'run' }>> => r.type === 'run');
  const ready = records.find((r) => r.type === 'ready');
  const end = records.find((r) => r.type === 'end');
  const snap = records.find((r): r is Stamped<Extract<FaultRecord, { type: 'snapshot' }>> => r.type === 'snapshot');
  if (!run || !ready) throw new Error(`${dir}: the fault log has no run header or the cluster never became ready`);
  const t0 = BigInt(ready.mono_ns);
  const rel = (mono: string) => Number(BigInt(mono) - t0);
  // Wall clock to the monotonic axis, for the workers' stderr lines (ms resolution).
  const offsets = records.map((r) => BigInt(r.mono_ns) - BigInt(r.wall_ms) * 1_000_000n).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const wallOffset = offsets[Math.floor(offsets.length / 2)]!;
  const wallToRel = (wallMs: number) => Number(BigInt(Math.round(wallMs)) * 1_000_000n + wallOffset - t0);

  const endNs = end ? rel(end.mono_ns) : Math.max(...records.map((r) => rel(r.mono_ns)));
  const snapNs = snap ? rel(snap.mono_ns) : undefined;
  const windowNs = (snap?.windowMs ?? 0) * 1e6;
  const B = run.boundMs * 1e6;
  const s = run.settings;
  const formulaBoundMs = s.requestTimeoutMs + (s.staleTicks + 3) * s.periodMs * s.driftBound;
  const findings: string[] = [];
  if (Math.abs(formulaBoundMs - run.boundMs) > 1e-6) {
    findings.push(`the bound in the fault log (${run.boundMs} ms) differs from the documented formula d + (K+3)Pf = ${formulaBoundMs} ms`);
  }
  const taskIds = records.find((r): r is Stamped<Extract<FaultRecord, { type: 'tasks' }>> => r.type === 'tasks')?.ids ?? [];

  // ---- instances and their faults, from the fault log
  const instances = new Map<string, InstanceInfo>();
  const outages: Interval[] = [];
  const faultMarks: TimelineModel['faults'] = [];
  const faultCounts: Record<string, number> = { kill: 0, pause: 0, partition: 0, clock: 0, outage: 0, net: 0, term: 0 };
  const openPause = new Map<string, number>();
  const openPartition = new Map<string, number>();
  const openNet = new Map<number, { at: number; instances: string[] }>();
  let openOutage: number | undefined;
  let skipped = 0;
  const storeRestarts: number[] = [];
  /** Stretches in which the harness's reads of the store took longer than d (store-probe.ts). */
  const storeSlow: Interval[] = [];
  let storeBytes = 0;
  const proxies = { requests: 0, blackholed: 0, throttled: 0, errors500: 0, droppedReplies: 0 };
  const inBound = (rate: number) => rate <= s.driftBound * (1 + 1e-9) && rate >= (1 / s.driftBound) * (1 - 1e-9);
  const failures: Array<{ kind: 'kill' | 'pause' | 'partition' | 'term'; instance: string; at: number }> = [];
  const exitsUnexpected: Violation[] = [];

  for (const r of records) {
    const t = rel(r.mono_ns);
    switch (r.type) {
      case 'spawn': {
        instances.set(r.instance, {
          name: r.instance,
          slot: r.slot,
          node: r.node,
          spawn: t,
          joined: undefined,
          end: undefined,
          endKind: undefined,
          rate: r.clockRate,
          offsetMs: r.clockOffsetMs,
          auditPath: join(dir, r.audit),
          stderrPath: join(dir, r.stderr),
          pauses: [],
          partitions: [],
          kill: undefined,
          term: undefined,
          exitUnexpected: undefined,
          exitCode: undefined,
          exitSignal: undefined,
          exitAt: undefined,
          fenced: [],
          leaseLost: [],
        });
        if (r.clockRate !== 1 || r.clockOffsetMs !== 0) {
          faultCounts['clock']! += 1;
          faultMarks.push({ kind: 'clock', slot: r.slot, fromMs: ms(t), label: `${r.instance} clock x${r.clockRate}, ${(r.clockOffsetMs / 3_600_000).toFixed(1)} h` });
          if (!inBound(r.clockRate)) findings.push(`${r.instance} ran with clock rate ${r.clockRate}, outside the drift bound ${s.driftBound}`);
        }
        break;
      }
      case 'joined': {
        const i = instances.get(r.instance);
        if (i) i.joined = t;
        break;
      }
      case 'kill':
      case 'term': {
        const i = instances.get(r.instance)!;
        if (r.type === 'kill') i.kill = t;
        else i.term = t;
        i.end ??= t;
        i.endKind ??= r.type;
        faultCounts[r.type]! += 1;
        failures.push({ kind: r.type, instance: r.instance, at: t });
        faultMarks.push({ kind: r.type, slot: i.slot, fromMs: ms(t), label: `${r.type === 'kill' ? 'SIGKILL' : 'SIGTERM'} ${r.instance}` });
        break;
      }
      case 'pause':
        openPause.set(r.instance, t);
        faultCounts['pause']! += 1;
        failures.push({ kind: 'pause', instance: r.instance, at: t });
        break;
      case 'resume': {
        const a = openPause.get(r.instance)!;
        openPause.delete(r.instance);
        const i = instances.get(r.instance)!;
        i.pauses.push({ a, b: t });
        faultMarks.push({ kind: 'pause', slot: i.slot, fromMs: ms(a), toMs: ms(t), label: `SIGSTOP ${r.instance}` });
        break;
      }
      case 'partition':
        openPartition.set(r.instance, t);
        faultCounts['partition']! += 1;
        failures.push({ kind: 'partition', instance: r.instance, at: t });
        break;
      case 'heal': {
        const a = openPartition.get(r.instance)!;
        openPartition.delete(r.instance);
        const i = instances.get(r.instance)!;
        i.partitions.push({ a, b: t });
        faultMarks.push({ kind: 'partition', slot: i.slot, fromMs: ms(a), toMs: ms(t), label: `partition ${r.instance}` });
        break;
      }
      case 'net-start':
        openNet.set(r.fault, { at: t, instances: r.instances });
        faultCounts['net']! += 1;
        break;
      case 'net-end': {
        const n = openNet.get(r.fault);
        openNet.delete(r.fault);
        if (n) for (const name of n.instances) faultMarks.push({ kind: 'net', slot: instances.get(name)?.slot, fromMs: ms(n.at), toMs: ms(t), label: `network errors ${name}` });
        break;
      }
      case 'outage-start':
        openOutage = t;
        faultCounts['outage']! += 1;
        break;
      case 'outage-end':
        if (openOutage !== undefined) {
          outages.push({ a: openOutage, b: t });
          faultMarks.push({ kind: 'outage', fromMs: ms(openOutage), toMs: ms(t), label: 'store outage' });
        }
        openOutage = undefined;
        break;
      case 'exit': {
        const i = instances.get(r.instance)!;
        i.exitCode = r.code;
        i.exitSignal = r.signal;
        i.exitAt = t;
        if (!r.expected) {
          i.exitUnexpected = t;
          i.end ??= t;
          i.endKind ??= 'exit';
          exitsUnexpected.push({ rule: 'unexpected exit', text: `${r.instance} (node ${r.node}) exited on its own at ${fmt(t)} (${r.signal ?? `code ${r.code}`}); stderr tail:\n${r.stderrTail ?? ''}` });
        } else if (i.term !== undefined && i.joined !== undefined && i.joined < i.term && i.kill === undefined && r.code !== 0 && t <= endNs) {
          // (A SIGTERM before the process had joined ends it before its handler exists.)
          findings.push(`${r.instance} left on SIGTERM with ${r.signal ?? `exit code ${r.code}`}, not 0`);
        }
        break;
      }
      case 'store-slow':
        storeSlow.push({ a: rel(r.from_ns), b: rel(r.to_ns) });
        break;
      case 'store':
        storeRestarts.push(r.restartMs);
        storeBytes = Math.max(storeBytes, r.dataBytes);
        break;
      case 'skip':
        skipped += 1;
        findings.push(`fault ${r.fault} (${r.kind} on ${r.slot}) skipped: ${r.reason}`);
        break;
      case 'finding':
        findings.push(r.text);
        break;
      case 'proxy-stats':
        proxies.requests += r.requests;
        proxies.blackholed += r.blackholed;
        proxies.throttled += r.throttled;
        proxies.errors500 += r.errors500;
        proxies.droppedReplies += r.droppedReplies;
        break;
      default:
        break;
    }
  }
  // Faults still open at the end of the log (the run ended or was interrupted).
  for (const [name, a] of openPause) instances.get(name)!.pauses.push({ a, b: Number.POSITIVE_INFINITY });
  for (const [name, a] of openPartition) instances.get(name)!.partitions.push({ a, b: Number.POSITIVE_INFINITY });
  if (openOutage !== undefined) outages.push({ a: openOutage, b: Number.POSITIVE_INFINITY });

  // ---- the workers' own logs: declarations of death, fencings, errors
  const declarations: Array<{ at: number; by: string; peer: string; instance: string; source: 'log' | 'zombie' }> = [];
  let fenced = 0;
  let zombies = 0;
  let heartbeatFailures = 0;
  const errorLines: string[] = [];
  const zombieLines: Array<{ at: number; by: string; peer: string; instance: string }> = [];
  for (const inst of instances.values()) {
    if (!existsSync(inst.stderrPath)) continue;
    let fenceOpen: number | undefined;
    let leaseLostAt: number | undefined;
    for (const line of readFileSync(inst.stderrPath, 'utf8').split('\n')) {
      if (!line.startsWith('{')) {
        if (line.trim() !== '' && errorLines.length < 20) errorLines.push(`${inst.name}: ${line.slice(0, 200)}`);
        continue;
      }
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const msg = rec['msg'];
      const at = wallToRel(Date.parse(String(rec['time'])));
      if (msg === 'declared peer dead') {
        declarations.push({ at, by: String(rec['node']), peer: String(rec['peer']), instance: inst.name, source: 'log' });
      } else if (typeof msg === 'string' && msg.startsWith('lease expired')) {
        fenced += 1;
        if (fenceOpen === undefined) fenceOpen = at;
        if (leaseLostAt === undefined) leaseLostAt = at;
      } else if (msg === 'lease renewed; resuming tasks' || msg === 'joined the cluster') {
        if (fenceOpen !== undefined) inst.fenced.push({ a: fenceOpen, b: at });
        if (leaseLostAt !== undefined) inst.leaseLost.push({ a: leaseLostAt, b: at });
        fenceOpen = undefined;
        leaseLostAt = undefined;
      } else if (typeof msg === 'string' && msg.startsWith('this incarnation was declared dead')) {
        zombies += 1;
        // The declarer's own line is missing when its write's reply was lost; the victim's
        // refused heartbeat still shows it. (Without deadBy the item was not declared dead:
        // e.g. the node's own graceful leave had already marked it 'left'.)
        if (typeof rec['declaredBy'] === 'string') zombieLines.push({ at, by: rec['declaredBy'], peer: inst.node, instance: inst.name });
        if (fenceOpen === undefined) fenceOpen = at;
      } else if (msg === 'heartbeat failed') heartbeatFailures += 1;
      if (rec['level'] === 'error' && errorLines.length < 20) errorLines.push(`${inst.name}: ${line.slice(0, 300)}`);
    }
    if (fenceOpen !== undefined) inst.fenced.push({ a: fenceOpen, b: inst.end ?? Number.POSITIVE_INFINITY });
    if (leaseLostAt !== undefined) inst.leaseLost.push({ a: leaseLostAt, b: inst.end ?? Number.POSITIVE_INFINITY });
  }
  for (const z of zombieLines) {
    const logged = declarations.some((d) => d.peer === z.peer && d.by === z.by && d.at <= z.at + 1e9 && d.at >= z.at - 60e9);
    if (!logged) declarations.push({ ...z, source: 'zombie' });
  }
  if (errorLines.length > 0) findings.push(`error-level or unstructured lines in worker logs:\n${errorLines.join('\n')}`);

  // ---- when the cluster could act: the store up and at least one live worker, i.e. one that
  // runs, is neither paused nor partitioned, and by its own log holds a valid lease. When
  // every worker has fenced itself with the store up (the store answers too slowly for the
  // request timeout on this machine: a brown-out), no protocol can run tasks; that time is
  // reported, and not counted against lost tasks or takeover times.
  const events: Array<{ t: number; d: number }> = [];
  for (const i of instances.values()) {
    const from = i.joined ?? Number.POSITIVE_INFINITY;
    const to = i.end ?? Number.POSITIVE_INFINITY;
    if (from >= to) continue;
    events.push({ t: from, d: +1 }, { t: to, d: -1 });
    for (const x of union([...i.pauses, ...i.partitions, ...i.fenced])) {
      const a = Math.max(x.a, from);
      const b = Math.min(x.b, to);
      if (b > a) events.push({ t: a, d: -1 }, { t: b, d: +1 });
    }
  }
  events.sort((x, y) => x.t - y.t || x.d - y.d);
  const noHealthy: Interval[] = [];
  let healthy = 0;
  let since = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    const before = healthy;
    healthy += e.d;
    if (before > 0 && healthy <= 0) since = e.t;
    if (before <= 0 && healthy > 0) noHealthy.push({ a: since, b: e.t });
  }
  if (healthy <= 0) noHealthy.push({ a: since, b: Number.POSITIVE_INFINITY });
  // The bound presumes that requests complete within d; stretches in which the store itself
  // was slower than that (measured by the harness) do not count against liveness either.
  const cannotAct = union([...outages, ...noHealthy, ...storeSlow]);
  const outageSet = union(outages);
  const slowSet = union(storeSlow);
  let storeSlowNs = 0;
  for (const x of slowSet) storeSlowNs += measureOutside(Math.max(x.a, 0), Math.max(Math.min(x.b, endNs), Math.max(x.a, 0)), outageSet);
  let brownOutNs = 0;
  for (const x of noHealthy) {
    const a = Math.max(x.a, 0);
    const b = Math.min(x.b, endNs);
    if (b > a) brownOutNs += measureOutside(a, b, outageSet);
  }
  const brownOutMs = ms(brownOutNs);

  // ---- audit logs
  const durationNs = Math.max(endNs, 1);
  const bucketNs = Math.max(1e9, Math.ceil(durationNs / 900 / 1e9) * 1e9);
  const buckets = Math.ceil(durationNs / bucketNs) + 1;
  const lanes = new Map<string, number[]>();
  const segmentGapNs = 1e9;
  const runsByTask = new Map<string, Run[]>();
  const violations: CheckResult['violations'] = {
    overlaps: [],
    workAfterStop: [],
    tokenRegressions: [],
    slowTakeovers: [],
    lostTasks: [],
    endState: [],
    falseTakeovers: [],
    unexpectedExits: exitsUnexpected,
  };
  let auditLines = 0;
  let malformed = 0;
  const malformedExamples: string[] = [];
  /** Work seen in the window after the final snapshot, per task: "node|token". */
  const atEnd = new Map<string, Set<string>>();

  for (const inst of instances.values()) {
    if (!existsSync(inst.auditPath)) continue;
    const lane = lanes.get(inst.slot) ?? new Array<number>(buckets).fill(0);
    lanes.set(inst.slot, lane);
    // The open run of each (task, token) in this process. Keyed by token too: when a task is
    // handed back with a new token, the old run's stop line may follow the new run's start.
    const current = new Map<string, Run>();
    let previous = Number.NEGATIVE_INFINITY;
    const input = createReadStream(inst.auditPath, { encoding: 'utf8', highWaterMark: 1 << 20 });
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      if (line === '') continue;
      auditLines += 1;
      let e: { event?: unknown; task?: unknown; node?: unknown; token?: unknown; mono_ns?: unknown };
      try {
        e = JSON.parse(line) as typeof e;
      } catch {
        e = {};
      }
      if (
        (e.event !== 'start' && e.event !== 'work' && e.event !== 'stop') ||
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
      if (t < previous) findings.push(`${inst.name}: audit timestamps go backwards at ${fmt(t)}`);
      previous = t;
      const task = e.task;
      const token = e.token;
      const key = `${task}|${token}`;
      if (e.event === 'start') {
        const before = current.get(key);
        if (before && before.works > 0) before.segments.push({ a: before.segStart, b: before.lastWork });
        const r: Run = { instance: inst.name, node: inst.node, task, token, start: t, firstWork: NaN, lastWork: NaN, stop: undefined, works: 0, segments: [], segStart: NaN, lastBucket: -1 };
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
      // work
      if (r.stop !== undefined) {
        violations.workAfterStop.push({ rule: 'work after stop', text: `${task}: ${inst.name} worked at ${fmt(t)} with token ${token} after its run stopped at ${fmt(r.stop)}` });
      }
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
  if (malformed > 0) findings.push(`${malformed} malformed or orphaned audit lines, e.g. ${malformedExamples.join(' | ')}`);

  // ---- safety per task
  let runCount = 0;
  for (const [task, list] of runsByTask) {
    runCount += list.length;
    const working = list.filter((r) => r.works > 0).sort((x, y) => x.start - y.start);
    // Overlap: a run whose span starts inside an earlier run's span.
    let open: Run[] = [];
    for (const r of working) {
      open = open.filter((o) => o.lastWork >= r.start);
      for (const o of open) {
        const detail = o.lastWork <= r.lastWork ? `${o.instance} worked at ${fmt(o.lastWork)}, inside ${r.instance}'s span from ${fmt(r.start)}` : `${r.instance} worked from ${fmt(r.firstWork)} inside ${o.instance}'s span up to ${fmt(o.lastWork)}`;
        violations.overlaps.push({ rule: 'overlap', text: `${task}: ${o.instance} (node ${o.node}, token ${o.token}) and ${r.instance} (node ${r.node}, token ${r.token}) both worked: ${detail}` });
      }
      open.push(r);
    }
    // Token order: a lower token working after a higher token has worked.
    for (const hi of working) {
      for (const lo of working) {
        if (lo.token < hi.token && lo.lastWork > hi.firstWork) {
          violations.tokenRegressions.push({ rule: 'token regression', text: `${task}: token ${lo.token} (${lo.instance}) worked at ${fmt(lo.lastWork)}, after token ${hi.token} (${hi.instance}) worked at ${fmt(hi.firstWork)}` });
        }
      }
    }
  }

  // ---- lost tasks: stretches without work while the cluster could act
  const lostLimit = B + run.workIntervalMs * 1e6;
  const worstGap: number[] = [];
  for (const task of taskIds) {
    const covered = union((runsByTask.get(task) ?? []).flatMap((r) => r.segments));
    const gaps: Interval[] = [];
    let cursor = 0;
    for (const c of covered) {
      if (c.b <= cursor) continue;
      if (c.a > cursor) gaps.push({ a: cursor, b: Math.min(c.a, endNs) });
      cursor = Math.max(cursor, c.b);
      if (cursor >= endNs) break;
    }
    if (cursor < endNs) gaps.push({ a: cursor, b: endNs });
    let worst = 0;
    for (const g of gaps) {
      if (g.b <= g.a) continue;
      const live = measureOutside(g.a, g.b, cannotAct);
      worst = Math.max(worst, live);
      if (live > lostLimit) {
        violations.lostTasks.push({ rule: 'lost task', text: `${task}: no work from ${fmt(g.a)} to ${fmt(g.b)}, ${(live / 1e9).toFixed(2)} s of it while the store was up and a worker was live (limit ${(lostLimit / 1e9).toFixed(2)} s)` });
      }
    }
    worstGap.push(ms(worst));
  }

  // ---- takeovers after failures, handovers after leaves
  const takeoverMs: number[] = [];
  const byKind: Record<string, number[]> = {};
  const handoverMs: number[] = [];
  let resumedInPlace = 0;
  const takeoverMarks: TimelineModel['takeovers'] = [];
  for (const f of failures) {
    const victim = instances.get(f.instance)!;
    let done = f.at;
    let count = 0;
    // The victim's tasks: those it was the last process to start before the fault. That
    // includes tasks it had stopped only because it was fenced at that moment; it does not
    // include tasks it had handed on (someone else started them before the fault).
    const victimTasks: Array<[string, Run[], Run]> = [];
    for (const [task, list] of runsByTask) {
      let last: Run | undefined;
      for (const r of list) if (r.start <= f.at && (!last || r.start > last.start)) last = r;
      if (last && last.instance === f.instance) victimTasks.push([task, list, last]);
    }
    // The bound grows with the tasks to move (failoverBoundMs(config, n) in lib/config.ts).
    const rounds = Math.ceil(victimTasks.length / batchMovesInFlight) + Math.ceil(victimTasks.length / moveConcurrency);
    const boundNs = B + rounds * s.requestTimeoutMs * 1e6;
    for (const [task, list, last] of victimTasks) {
      // Taken over: the first run after the fault under a newer token, by any process (the
      // victim itself counts once it has rejoined as a new incarnation and got the task back).
      const next = list.filter((r) => r.start >= f.at && r.token > last.token).sort((x, y) => x.start - y.start)[0];
      // The victim got going again with the task itself first (a partition or pause that
      // healed before anyone declared it dead): a later move under a newer token is a
      // handover (rebalancing, a leave), not this fault's takeover.
      const resumedFirst = next !== undefined && list.some((r) => r.instance === f.instance && r.token === last.token && r.segments.some((seg) => seg.a > f.at && seg.a < next.start));
      if (resumedFirst && f.kind !== 'kill' && f.kind !== 'term') {
        resumedInPlace += 1;
        continue;
      }
      if (next && next.start <= endNs) {
        const took = ms(next.start - f.at);
        count += 1;
        done = Math.max(done, next.start);
        if (f.kind === 'term') {
          handoverMs.push(took);
          continue;
        }
        takeoverMs.push(took);
        (byKind[f.kind] ??= []).push(took);
        // Compared with the bound: the time in which the cluster could act (see above).
        const acting = measureOutside(f.at, next.start, cannotAct);
        if (acting > boundNs) {
          violations.slowTakeovers.push({ rule: 'takeover slower than the bound', text: `${task} of ${f.instance} (${f.kind} at ${fmt(f.at)}): started with token ${next.token} on ${next.instance} after ${(took / 1000).toFixed(2)} s (${(acting / 1e9).toFixed(2)} s of it with the store up and a live worker) > bound ${(boundNs / 1e9).toFixed(2)} s for ${victimTasks.length} tasks` });
        }
        continue;
      }
      // Not moved: the victim may have kept it (a partition healed before anyone could
      // declare it dead). Whether it then ran in time is the lost-task check's concern.
      const again = list.some((r) => r.instance === f.instance && r.token === last.token && r.works > 0 && r.lastWork > f.at);
      if (again && f.kind !== 'kill' && f.kind !== 'term') resumedInPlace += 1;
      else if (f.at + B < endNs) {
        violations.lostTasks.push({ rule: 'not taken over', text: `${task}, held by ${f.instance} when it was hit (${f.kind} at ${fmt(f.at)}), never ran again under a newer token` });
      }
    }
    if (count > 0) takeoverMarks.push({ slot: victim.slot, faultMs: ms(f.at), doneMs: ms(done), tasks: count });
  }

  // ---- after each store outage: how soon every task that ran before it ran again
  const outageResumeMs: number[] = [];
  for (const o of outages) {
    if (!Number.isFinite(o.b)) continue;
    for (const list of runsByTask.values()) {
      const before = list.some((r) => r.works > 0 && r.firstWork <= o.a && r.lastWork >= o.a - 1e9);
      if (!before) continue;
      let first = Number.POSITIVE_INFINITY;
      for (const r of list) {
        if (r.works === 0 || r.lastWork < o.b) continue;
        if (r.firstWork >= o.b) first = Math.min(first, r.firstWork);
        else first = Math.min(first, firstWorkAfter(r, o.b));
      }
      if (Number.isFinite(first)) outageResumeMs.push(ms(first - o.b));
    }
  }


  const byNode = new Map<string, InstanceInfo[]>();
  for (const i of instances.values()) byNode.set(i.node, [...(byNode.get(i.node) ?? []), i]);
  for (const list of byNode.values()) list.sort((x, y) => x.spawn - y.spawn);

  /**
   * Whether node `peer` could rightly be declared dead at `t` (undefined: some time in the
   * run, for a 'dead' item found in the final table). It could if the incarnation current
   * at t had a fault of its own that kept it from heartbeating:
   *  - killed, or exited by itself, before t;
   *  - sent SIGTERM before t (a leave that could not finish leaves a live-looking item);
   *  - paused or partitioned at some time in [t - duration, t], or the fault ended less than
   *    one failover bound before t (its next heartbeat may lose the race with a declaration
   *    that was already under way);
   *  - running with a clock outside the drift bound (the harness does not do this, but a
   *    slower clock than promised is a legitimate reason).
   * A store outage alone excuses nothing. While the store is down no write lands, so no
   *  declaration can happen during it; and no counter advances in the table, so the outage
   *  is no evidence against anyone (the observer's own outage is not evidence). When the
   *  store is back, every node that still runs resumes heartbeating within one of its own
   *  periods, long before anyone can accumulate K benchmark ticks against it. So after an
   *  outage only a node that was also paused, partitioned, killed or gone may be declared
   *  dead; a node cut off by the outage alone must not be.
   * Which incarnation: a declaration is of the instance with that node id that joined last
   * before t; one second of slack covers the delay between a join and its log line.
   */
  const justify = (peer: string, t: number | undefined): string | undefined => {
    const list = byNode.get(peer) ?? [];
    for (const [index, i] of list.entries()) {
      if (t !== undefined) {
        const next = list[index + 1];
        if (i.spawn > t) continue;
        if (next?.joined !== undefined && next.joined + 1e9 < t) continue;
      }
      const after = (x: number | undefined) => x !== undefined && (t === undefined || t >= x);
      if (after(i.kill)) return `${i.name} was killed at ${fmt(i.kill!)}`;
      if (after(i.exitUnexpected)) return `${i.name} exited at ${fmt(i.exitUnexpected!)}`;
      if (i.term !== undefined && after(i.exitAt)) return `${i.name} had left (exited at ${fmt(i.exitAt!)})`;
      for (const p of i.pauses) if (t === undefined || (t >= p.a && t <= p.b + B)) return `${i.name} was paused from ${fmt(p.a)}`;
      for (const p of i.partitions) if (t === undefined || (t >= p.a && t <= p.b + B)) return `${i.name} was partitioned from ${fmt(p.a)}`;
      if (!inBound(i.rate)) return `${i.name} ran with clock rate ${i.rate}, outside the drift bound`;
    }
    return undefined;
  };

  /**
   * A declaration without a fault of the node's own is still not a false takeover if the
   * node itself says it could not renew its lease at the time (it had fenced itself: the
   * store was too slow for it, or its process was starved), provided no store outage ended in
   * the last (K-1)P/f + Pf before: a node cut off only by an outage must come back unharmed.
   * These are counted apart, so a brown-out on this machine shows up as such.
   */
  const selfFenced = (peer: string, t: number): string | undefined => {
    const lookBack = (run.earliestDeclarationMs + s.periodMs * s.driftBound) * 1e6;
    if (outages.some((o) => o.a <= t && o.b >= t - lookBack)) return undefined;
    for (const i of byNode.get(peer) ?? []) {
      const f = i.leaseLost.find((x) => x.a <= t && t <= x.b);
      if (f) return `${i.name} had fenced itself at ${fmt(f.a)} (could not renew its lease)`;
    }
    return undefined;
  };

  const detection: number[] = [];
  const declarationMarks: TimelineModel['declarations'] = [];
  const slotOf = (node: string, t: number) => {
    const list = byNode.get(node) ?? [];
    return [...list].reverse().find((i) => i.spawn <= t)?.slot ?? list[0]?.slot;
  };
  let declaredWhileFenced = 0;
  for (const d of declarations) {
    const why = justify(d.peer, d.at);
    const fencedWhy = why ? undefined : selfFenced(d.peer, d.at);
    if (fencedWhy) declaredWhileFenced += 1;
    declarationMarks.push({ slot: slotOf(d.peer, d.at), atMs: ms(d.at), peer: d.peer, by: d.by, justified: why !== undefined || fencedWhy !== undefined });
    if (!why && !fencedWhy) {
      const inOutage = outages.find((o) => d.at >= o.a && d.at <= o.b + B);
      violations.falseTakeovers.push({
        rule: 'false takeover',
        text: `${d.by} (${d.source === 'log' ? d.instance : `seen in ${d.instance}'s log`}) declared ${d.peer} dead at ${fmt(d.at)}, but no instance of ${d.peer} was killed, paused, partitioned, gone or outside the drift bound then${inOutage ? ` (a store outage ran from ${fmt(inOutage.a)} to ${fmt(inOutage.b)})` : ''}`,
      });
      continue;
    }
    if (!why) continue;
    // Detection latency: from the start of the fault that justified it.
    const list = byNode.get(d.peer) ?? [];
    const starts = list.flatMap((i) => [i.kill, i.exitUnexpected, i.term, ...i.pauses.map((p) => p.a), ...i.partitions.map((p) => p.a)]).filter((x): x is number => x !== undefined && x <= d.at);
    if (starts.length > 0) detection.push(ms(d.at - Math.max(...starts)));
  }

  // ---- the final table
  let table: TableSnapshot | undefined;
  if (existsSync(join(dir, 'table.json'))) table = JSON.parse(readFileSync(join(dir, 'table.json'), 'utf8')) as TableSnapshot;
  if (!table) {
    violations.endState.push({ rule: 'no final table', text: 'the run ended before the final table was read' });
  } else {
    const created = new Set(taskIds);
    const seen = new Map<string, number>();
    const nodes = new Map(table.nodes.map((n) => [String(n['id']), n]));
    for (const n of table.nodes) {
      if (n['state'] !== 'dead') continue;
      const why = justify(String(n['id']), undefined);
      if (!why) violations.falseTakeovers.push({ rule: 'false takeover', text: `node ${String(n['id'])} is 'dead' in the final table (declared by ${String(n['deadBy'])}), but no instance of it was ever killed, paused, partitioned or gone` });
    }
    let fencedAtEnd = 0;
    const maxAuditToken = new Map<string, number>();
    // Tokens at work before the table was read (the 'end' record precedes the scan).
    for (const [task, list] of runsByTask) maxAuditToken.set(task, Math.max(...list.filter((r) => r.works > 0 && r.firstWork <= endNs).map((r) => r.token), -1));
    for (const item of table.tasks) {
      const id = String(item['id']);
      seen.set(id, (seen.get(id) ?? 0) + 1);
      if (!created.has(id)) {
        violations.endState.push({ rule: 'unexpected task', text: `${id} is in the table but was never created` });
        continue;
      }
      if (item['state'] !== 'ready') {
        violations.endState.push({ rule: 'task state', text: `${id} is '${String(item['state'])}' at the end (a demo task runs until revoked)` });
        continue;
      }
      const owner = item['owner'] === undefined || item['owner'] === '#free' ? null : String(item['owner']);
      const token = Number(item['token']);
      if (token < (maxAuditToken.get(id) ?? -1)) {
        violations.tokenRegressions.push({ rule: 'table token behind', text: `${id}: table token ${token} is lower than token ${maxAuditToken.get(id)} already seen at work` });
      }
      if (!owner) {
        violations.endState.push({ rule: 'unowned at end', text: `${id} has no owner at the end` });
        continue;
      }
      const node = nodes.get(owner);
      if (!node || node['state'] !== 'alive' || Number(node['inc']) !== Number(item['ownerInc'])) {
        violations.endState.push({ rule: 'owner not alive', text: `${id} is owned by ${owner} (inc ${String(item['ownerInc'])}), which is ${node ? `'${String(node['state'])}' with inc ${String(node['inc'])}` : 'not in the table'} at the end` });
        continue;
      }
      const runningNow = atEnd.get(id);
      const byOwner = runningNow?.has(`${owner}|${token}`) ?? false;
      const movedOn = [...(runningNow ?? [])].some((k) => Number(k.split('|')[1]) > token);
      const ownerFenced = (byNode.get(owner) ?? []).some((i) => i.fenced.some((f) => f.a <= snapNs! + windowNs && f.b >= snapNs!));
      if (!byOwner && !movedOn && ownerFenced) {
        fencedAtEnd += 1;
        continue;
      }
      if (!byOwner && !movedOn) {
        violations.endState.push({ rule: 'owner not running it', text: `${id}: the table names ${owner} with token ${token}, but ${runningNow ? `only ${[...runningNow].join(', ')} worked on it` : 'nobody worked on it'} in the ${windowNs / 1e6} ms after the snapshot` });
      }
    }
    for (const id of taskIds) if (!seen.has(id)) violations.endState.push({ rule: 'vanished task', text: `${id} was created but is not in the final table` });
    if (fencedAtEnd > 0) findings.push(`${fencedAtEnd} tasks were not at work after the final snapshot because their owner (alive in the table) had fenced itself then; not counted as violations`);
  }

  // ---- timeline model
  const laneModel = [...lanes.keys()]
    .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
    .map((slot) => ({
      slot,
      running: lanes.get(slot)!,
      instances: [...instances.values()]
        .filter((i) => i.slot === slot)
        .map((i) => ({ name: i.name, node: i.node, fromMs: ms(i.spawn), toMs: ms(i.end ?? endNs), clock: i.rate !== 1 || i.offsetMs !== 0 ? `x${Number(i.rate.toFixed(2))}${i.offsetMs >= 0 ? '+' : ''}${(i.offsetMs / 3_600_000).toFixed(1)}h` : '' })),
    }));

  const takeover = stats(takeoverMs);
  const result: CheckResult = {
    ok: false,
    run,
    phaseMs: ms(endNs),
    brownOutMs,
    faults: faultCounts,
    skipped,
    counts: { auditLines, runs: runCount, instances: instances.size, declarations: declarations.length, declaredWhileFenced, fenced, zombies, heartbeatFailures },
    takeover: { ...takeover, boundMs: run.boundMs, formulaBoundMs, resumedInPlace, byKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, stats(v)])) },
    handover: stats(handoverMs),
    outageResume: stats(outageResumeMs),
    detectionMs: stats(detection),
    violations,
    findings,
    proxies,
    store: { restarts: stats(storeRestarts), dataMb: storeBytes / 2 ** 20, slowMs: ms(storeSlowNs) },
    timeline: { endMs: ms(endNs), bucketMs: ms(bucketNs), lanes: laneModel, faults: faultMarks, declarations: declarationMarks, takeovers: takeoverMarks },
  };
  result.ok = Object.values(violations).every((list) => list.length === 0);
  return result;
}

function firstWorkAfter(r: Run, t: number): number {
  for (const s of r.segments) if (s.b >= t) return Math.max(s.a, t);
  return Number.POSITIVE_INFINITY;
}

/** One line per rule: how many violations, and the first few. */
export function summarize(result: CheckResult, examples = 3): string[] {
  const lines: string[] = [];
  for (const [rule, list] of Object.entries(result.violations)) {
    lines.push(`${rule}: ${list.length}`);
    for (const v of list.slice(0, examples)) lines.push(`  - ${v.text.split('\n')[0]}`);
  }
  const t = result.takeover;
  lines.push(`takeover: ${t.count} tasks, p50 ${t.p50Ms.toFixed(0)} ms, p99 ${t.p99Ms.toFixed(0)} ms, max ${t.maxMs.toFixed(0)} ms (bound ${t.boundMs.toFixed(0)} ms)`);
  return lines;
}

// `tsx test/chaos/checker.ts <run dir>`: re-check a finished run from its files.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const target = process.argv[2];
  if (!target || process.argv.length > 3 || !existsSync(join(target, 'faults.jsonl'))) {
    process.stderr.write('usage: tsx test/chaos/checker.ts <run directory with faults.jsonl>\n');
    process.exit(2);
  }
  const result = await checkRun(target);
  writeFileSync(join(target, 'check.json'), `${JSON.stringify({ ...result, timeline: undefined }, null, 2)}\n`);
  // The report is the harness's; rewrite it when the harness left what it needs.
  if (existsSync(join(target, 'machine.json'))) {
    const { writeReport } = await import('./report.js');
    const { machine, timing } = JSON.parse(readFileSync(join(target, 'machine.json'), 'utf8')) as { machine: never; timing: never };
    writeReport(target, result, machine, timing);
  }
  for (const line of summarize(result)) process.stdout.write(`${line}\n`);
  for (const f of result.findings) process.stdout.write(`finding: ${f}\n`);
  process.exit(result.ok ? 0 : 1);
}

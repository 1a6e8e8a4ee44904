import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FaultRecord, ProtocolSettingsRecord, Stamped } from '../fault-log.js';
import { readAuditLogs, type AuditLogs, type Effect, type Run } from './audit-logs.js';
import { availability, type Availability } from './availability.js';
import { readFaultLog, type Failure, type FaultSpan, type Instance } from './faults.js';
import type { TableSnapshot } from './table-scan.js';
import type { Interval } from './time-axis.js';
import { readWorkerLogs, type Declaration, type WorkerLogs } from './worker-logs.js';

/**
 * A finished run as the rules see it: every file of the run directory read and parsed once
 * (the fault log, each worker's stderr and audit log, the final table), on one time axis.
 * The rules only read it; whatever two of them need is worked out here, once.
 */

export type RunHeader = Extract<FaultRecord, { type: 'run' }>;
export type { Instance, Failure, FaultSpan, Run, Declaration, Effect };

export interface RunModel {
  readonly dir: string;
  /** The harness's fault log, in the order it was written. */
  readonly records: readonly Stamped[];
  readonly run: Stamped<RunHeader>;
  readonly settings: ProtocolSettingsRecord;
  /** A record's mono_ns on the run's axis. */
  readonly rel: (mono: string) => number;
  /** End of the fault phase (the `end` record, else the last record). */
  readonly endNs: number;
  /** When the final table had been read, and how long work was watched after that. */
  readonly snapNs: number | undefined;
  readonly windowNs: number;
  /** The failover bound of the fault log, B = d + (K+3)Pf, in ns. */
  readonly boundNs: number;
  /** The same bound recomputed from the settings by the documented formula. */
  readonly formulaBoundMs: number;
  readonly taskIds: readonly string[];
  /** Finite tasks, each with when the harness created it: only the at-most-once rule judges them. */
  readonly finiteTasks: ReadonlyMap<string, number>;
  readonly instances: ReadonlyMap<string, Instance>;
  /** Every incarnation of each node id, in spawn order. */
  readonly byNode: ReadonlyMap<string, readonly Instance[]>;
  readonly failures: readonly Failure[];
  /** Store outages; one still open at the end of the log runs to +Infinity. */
  readonly outages: readonly Interval[];
  readonly faultSpans: readonly FaultSpan[];
  readonly faultCounts: Readonly<Record<string, number>>;
  readonly skipped: number;
  readonly store: {
    readonly restartsMs: readonly number[];
    readonly dataBytes: number;
    /** Stretches in which the harness's reads of the store took longer than d (store-probe.ts). */
    readonly slow: readonly Interval[];
  };
  readonly proxies: { readonly requests: number; readonly blackholed: number; readonly throttled: number; readonly errors500: number; readonly droppedReplies: number };
  readonly declarations: readonly Declaration[];
  /**
   * Per task, the stretches in which a stubborn leave held it: from the SIGTERM to the end of
   * the leave, for each task the leaving node named as stuck. No one may take such a task
   * before the node's lease runs out after its last heartbeat, so the lost-task rule does not
   * count them (the takeover rule times the task from the end instead).
   */
  readonly stuckInLeave: ReadonlyMap<string, readonly Interval[]>;
  readonly workerLogs: Omit<WorkerLogs, 'declarations'>;
  readonly runsByTask: ReadonlyMap<string, readonly Run[]>;
  readonly audit: Omit<AuditLogs, 'runsByTask'>;
  readonly availability: Availability;
  /** The final table (table.json), if the run got as far as reading it. */
  readonly table: TableSnapshot | undefined;
}

/** Whether a clock rate is within the drift bound f of the settings. */
export function withinDriftBound(settings: ProtocolSettingsRecord, rate: number): boolean {
  return rate <= settings.driftBound * (1 + 1e-9) && rate >= (1 / settings.driftBound) * (1 - 1e-9);
}

export async function loadRun(dirInput: string): Promise<RunModel> {
  const dir = resolve(dirInput);
  const records = readFileSync(join(dir, 'faults.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Stamped);
  const run = records.find((r): r is Stamped<RunHeader> => r.type === 'run');
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
  const s = run.settings;
  const taskIds = records.find((r): r is Stamped<Extract<FaultRecord, { type: 'tasks' }>> => r.type === 'tasks')?.ids ?? [];

  const finiteTasks = new Map<string, number>();
  for (const r of records) if (r.type === 'finite-tasks') for (const id of r.ids) finiteTasks.set(id, rel(r.mono_ns));

  const faults = readFaultLog(dir, records, rel);
  const { declarations, ...workerLogs } = readWorkerLogs(faults.instances.values(), wallToRel);
  const { runsByTask, ...audit } = await readAuditLogs(faults.instances.values(), { rel, endNs, snapNs, windowNs });

  const stuckInLeave = new Map<string, Interval[]>();
  for (const f of faults.failures) {
    if (f.kind !== 'stubborn-term') continue;
    const leave = workerLogs.stuckLeaves.find((l) => l.instance === f.instance);
    if (leave) for (const task of leave.tasks) stuckInLeave.set(task, [...(stuckInLeave.get(task) ?? []), { a: f.at, b: leave.at }]);
  }

  const byNode = new Map<string, Instance[]>();
  for (const i of faults.instances.values()) byNode.set(i.node, [...(byNode.get(i.node) ?? []), i]);
  for (const list of byNode.values()) list.sort((x, y) => x.spawn - y.spawn);

  let table: TableSnapshot | undefined;
  if (existsSync(join(dir, 'table.json'))) table = JSON.parse(readFileSync(join(dir, 'table.json'), 'utf8')) as TableSnapshot;

  return {
    dir,
    records,
    run,
    settings: s,
    rel,
    endNs,
    snapNs,
    windowNs,
    boundNs: run.boundMs * 1e6,
    formulaBoundMs: s.requestTimeoutMs + (s.staleTicks + 3) * s.periodMs * s.driftBound,
    taskIds,
    finiteTasks,
    instances: faults.instances,
    byNode,
    failures: faults.failures,
    outages: faults.outages,
    faultSpans: faults.spans,
    faultCounts: faults.counts,
    skipped: faults.skipped,
    store: faults.store,
    proxies: faults.proxies,
    declarations,
    stuckInLeave,
    workerLogs,
    runsByTask,
    audit,
    availability: availability(faults.instances.values(), faults.outages, faults.store.slow, endNs),
    table,
  };
}

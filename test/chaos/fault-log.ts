import { appendFileSync } from 'node:fs';

/**
 * The harness's own record of what it did and when: one JSON line per action, each stamped
 * with `mono_ns` (process.hrtime.bigint(), the machine's monotonic clock that the workers'
 * audit logs use too) and `wall_ms` (Date.now(), only to place the workers' wall-clock
 * stderr lines on the same axis).
 *
 * This file holds only the format. The checker reads it without importing anything else of
 * the harness or of lib/, so that a bug in either cannot hide itself.
 */
export interface ProtocolSettingsRecord {
  periodMs: number;
  staleTicks: number;
  driftBound: number;
  requestTimeoutMs: number;
  handlerStopMs: number;
  fenceMs: number;
}

export interface NetRates {
  throttle: number;
  error500: number;
  dropReply: number;
}

export type FaultKind = 'kill' | 'pause' | 'stall' | 'partition' | 'clock' | 'outage' | 'net' | 'term' | 'stubborn-term';
/** The kinds every default run injects (`stubborn-term` is opt-in: `--kinds`). */
export const faultKinds: readonly FaultKind[] = ['kill', 'pause', 'stall', 'partition', 'clock', 'outage', 'net', 'term'];

export type FaultRecord =
  | {
      type: 'run';
      seed: number;
      workers: number;
      tasks: number;
      seconds: number;
      faultsPerKind: number;
      /** Opt-in: finite tasks asked for (`--finite-tasks`), and the kinds planned if not the default mix (`--kinds`). */
      finiteTasks?: number;
      kinds?: string[];
      table: string;
      settings: ProtocolSettingsRecord;
      /** failoverBoundMs of the settings, as lib/config.ts documents it. */
      boundMs: number;
      /** (K - 1) * P / f: no node may be declared dead sooner after its last heartbeat. */
      earliestDeclarationMs: number;
      /** Interval of the demo handler's work events. */
      workIntervalMs: number;
    }
  | { type: 'tasks'; ids: string[] }
  /** Finite `demo-job` tasks created (at the start, and more during the faults): judged by the at-most-once rule, not as long-running tasks. */
  | { type: 'finite-tasks'; ids: string[] }
  | {
      type: 'spawn';
      instance: string;
      slot: string;
      node: string;
      pid: number;
      clockRate: number;
      clockOffsetMs: number;
      audit: string;
      stderr: string;
      reason: 'initial' | 'replaces-kill' | 'replaces-term' | 'replaces-exit';
      /** Started with slow demo handlers on its leave and a short leave timeout (it is headed for a stubborn-term). */
      stubborn?: boolean;
    }
  | { type: 'joined'; instance: string; node: string }
  | { type: 'ready' }
  | { type: 'kill' | 'pause' | 'resume' | 'stall' | 'unstall' | 'partition' | 'heal' | 'term'; fault: number; instance: string; node: string; plannedMs?: number; /** A term of a process with slow demo handlers and a short leave timeout (`stubborn-term`). */ stubborn?: boolean }
  | { type: 'net-start'; fault: number; instances: string[]; rates: NetRates }
  | { type: 'net-end'; fault: number; instances: string[] }
  | { type: 'outage-start' | 'outage-end'; fault: number }
  | { type: 'skip'; fault: number; kind: FaultKind; slot: string; reason: string }
  | { type: 'exit'; instance: string; node: string; code: number | null; signal: string | null; expected: boolean; stderrTail?: string }
  | { type: 'finding'; text: string }
  /** A stretch in which the harness's own reads of DynamoDB Local took longer than d or failed. */
  | { type: 'store-slow'; from_ns: string; to_ns: string }
  /** After each restart of DynamoDB Local: how long it took and how big its data had grown. */
  | { type: 'store'; restartMs: number; dataBytes: number }
  | { type: 'proxy-stats'; instance: string; requests: number; blackholed: number; throttled: number; errors500: number; droppedReplies: number }
  /** The fault phase is over; the final table snapshot is taken now. */
  | { type: 'end' }
  /** The snapshot has been read; work in the next `windowMs` shows who runs what at the end. */
  | { type: 'snapshot'; windowMs: number };

export type Stamped<T = FaultRecord> = T & { mono_ns: string; wall_ms: number };

export class FaultLog {
  constructor(readonly path: string) {}

  /** Appends one record synchronously: a crash of the harness never leaves half a line. */
  write(record: FaultRecord): Stamped {
    const stamped = { ...record, mono_ns: process.hrtime.bigint().toString(), wall_ms: Date.now() } as Stamped;
    appendFileSync(this.path, `${JSON.stringify(stamped)}\n`);
    return stamped;
  }
}

import type { FaultRecord } from '../fault-log.js';

/**
 * What the checker says about a run: the verdict per rule, the measured times and the
 * picture's model. Types and the percentile summary only, so that the report and the SVG can
 * read a result without loading the checker that makes one.
 */
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
    /** Finite tasks whose side effect repeated without a fault of the node that did it first, or that never completed. */
    atMostOnce: Violation[];
  };
  /** Finite tasks (`--finite-tasks`): how many, their side effects, and how many of those repeated one. */
  finite: { tasks: number; effects: number; repeated: number };
  findings: string[];
  proxies: { requests: number; blackholed: number; throttled: number; errors500: number; droppedReplies: number };
  /** DynamoDB Local restarts after the outages, and the largest size its data reached. */
  store: { restarts: Stats; dataMb: number; slowMs: number };
  timeline: TimelineModel;
}

export function stats(valuesMs: readonly number[]): Stats {
  if (valuesMs.length === 0) return { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
  const sorted = [...valuesMs].sort((a, b) => a - b);
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { count: sorted.length, p50Ms: rank(0.5), p99Ms: rank(0.99), maxMs: sorted[sorted.length - 1]! };
}

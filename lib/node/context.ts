import type { Clock } from '../clock.js';
import type { KeeperConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { RunOutcome } from '../tasks.js';

/** What a node's listeners hear (Worker is an EventEmitter of these). */
export interface WorkerEvents {
  joined: [{ inc: number }];
  'heartbeat-failed': [{ error: string }];
  /** The beat's timer fired this much later than due: the event loop was blocked (or the process frozen). */
  stalled: [{ ms: number }];
  fenced: [{ sinceRenewalMs: number; tasks: number }];
  unfenced: [{ tasks: number }];
  zombie: [{ declaredBy?: string }];
  'declared-dead': [{ node: string; staleness: number }];
  takeover: [{ node: string; tasks: number; moved: number; ms: number }];
  'task-started': [{ task: string; token: number }];
  'task-ended': [{ task: string; outcome: RunOutcome }];
  rebalanced: [{ to: string; tasks: number }];
  /** The node's item began or ceased to carry an operator's drain flag. */
  drain: [{ draining: boolean; tasks: number }];
  left: [{ handedOver: number; ms: number }];
}

export type Phase = 'new' | 'joining' | 'running' | 'leaving' | 'stopped';

/**
 * What every part of a node shares and none of them owns: who it is, its settings, its clock
 * and store, and read-only views of the three facts the Worker keeps for all of them (the
 * phase of its life, its incarnation, the maintenance passes it has run). A part reaches
 * anything else only through the hooks it was given.
 */
export interface NodeContext {
  readonly id: string;
  /** The resolved settings: one object, read where used (the scale model changes it in place). */
  readonly config: KeeperConfig;
  readonly clock: Clock;
  readonly store: Store;
  readonly log: Logger;
  emit<K extends keyof WorkerEvents>(event: K, ...args: WorkerEvents[K]): void;
  phase(): Phase;
  /** This node's incarnation number, as the heartbeat holds it. */
  inc(): number;
  /** When this incarnation joined, as its item says: with `config.appVersion`, its generation for placement (newestVersion). */
  joinedAt(): string;
  /** Maintenance passes run so far: the unit of every wait counted in passes (holds, follow-ups, sweeps). */
  passes(): number;
  /** A pass that does the periodic work too (every `resyncTicks` passes). */
  periodic(): boolean;
  /** A retry delay: full jitter, doubling per attempt, capped. */
  backoffMs(attempt: number): number;
}

import { CheckpointError, encodeCheckpoint } from './checkpoint.js';
import { sleep, type Clock } from './clock.js';
import type { TaskItem } from './store/store.js';

/**
 * What user code sees of a task. Cancellation (the signal) is the one way work is told to
 * stop; `isValid()` is the check to make before every side effect, because a timer-driven
 * abort cannot fire while the process is frozen (GC pause, SIGSTOP, VM migration) and code
 * that wakes up must be able to tell that its lease ran out in the meantime.
 */
export interface TaskContext<P = unknown, C = unknown> {
  readonly task: {
    readonly id: string;
    readonly type: string;
    readonly payload: P;
    readonly attempts: number;
    /**
     * The last state accepted by `checkpoint()` when this attempt started, whichever owner or
     * attempt stored it (undefined if none): where a poller resumes.
     */
    readonly checkpoint?: C;
  };
  /**
   * The fencing token: it grows with every change of the task's owner and every payload
   * update. Pass it with every write to the resource the task protects, and have that resource
   * refuse tokens lower than the highest it has seen; this stops a paused former owner that
   * wakes up too late (and a run with an old payload that has not stopped yet).
   */
  readonly token: number;
  readonly nodeId: string;
  /** Aborted when this node must stop the task (revoked, taken over, fenced, leaving, or restarted with a new payload). */
  readonly signal: AbortSignal;
  /** Synchronous, from the monotonic clock: true while this node still holds a valid lease on the task. */
  isValid(): boolean;
  /**
   * Stores a small JSON state on the task (at most `limits.checkpointBytes` of JSON), for the
   * next owner and the next attempt (`ctx.task.checkpoint`). The write succeeds only while
   * the task is still this run's: owner and fencing token unchanged. Calls are written one
   * at a time, in call order. Rejects with CheckpointError: `not-json` or `too-large` (nothing
   * written), `refused` (the task is no longer ours: `signal` is aborted, stop), `unconfirmed`
   * (the store kept failing).
   */
  checkpoint(state: C): Promise<void>;
}

/** Task code: gets the task's context, and returns (finite tasks: the result) or runs until `ctx.signal` aborts (long-running tasks). */
export type TaskHandler<P = unknown, R = unknown, C = unknown> = (ctx: TaskContext<P, C>) => Promise<R> | R;

/** `long-running`: runs until revoked, restarted after a backoff if it returns. `finite`: the resolved value completes the task. */
export type TaskMode = 'long-running' | 'finite';

/** How a handler's task runs: its mode and how often it may fail. */
export interface HandlerOptions {
  /**
   * 'long-running' (default): runs until revoked; if it returns on its own it is started again
   * after a backoff. 'finite': the resolved value completes the task, which never runs again.
   */
  mode?: TaskMode;
  /** A handler that throws is retried with backoff; after this many failures the task is marked failed. */
  maxAttempts?: number;
}

export interface Registration {
  handler: TaskHandler;
  mode: TaskMode;
  maxAttempts?: number;
}

/** What a run needs from its worker: the lease check and ways to record outcomes. */
export interface RunHost {
  readonly nodeId: string;
  readonly clock: Clock;
  leaseValid(): boolean;
  backoffMs(attempt: number): number;
  readonly maxAttempts: number;
  /** Persists a failure; resolves to 'failed' once attempts are used up, 'retry' otherwise, 'lost' if the task is no longer ours. */
  recordFailure(task: TaskItem, error: unknown, maxAttempts: number): Promise<'retry' | 'failed' | 'lost'>;
  /** Persists a finite task's result; false if the task is no longer ours (a store error is retried, not false). */
  recordDone(task: TaskItem, result: unknown): Promise<boolean>;
  /** Stores a checkpoint's JSON text; false if the task is no longer ours; rejects (CheckpointError `unconfirmed`) if the store kept failing. */
  saveCheckpoint(task: TaskItem, json: string): Promise<boolean>;
  /** Called once when the run ends (stopped, completed, failed for good, or no longer ours). */
  ended(run: TaskRun, outcome: RunOutcome): void;
  onError(message: string, error: unknown): void;
}

export type RunOutcome = 'stopped' | 'done' | 'failed' | 'lost';

/**
 * One task running on this node, from start until it is stopped or finishes. The run owns
 * the retry loop so that a handler that throws is retried here, with the attempt count kept
 * in the table so that it survives a move to another node.
 */
export class TaskRun {
  private readonly controller = new AbortController();
  private recordingOutcome = false;
  /** The last checkpoint write asked for: the next one waits for it, so they land in call order. */
  private lastCheckpoint: Promise<void> = Promise.resolve();
  /** The table refused a checkpoint: the task is no longer this run's. */
  private refused = false;
  /** The handler has returned and the outcome is written: nothing of this run is left going. */
  private finished = false;
  readonly done: Promise<void>;

  constructor(
    private task: TaskItem,
    private readonly registration: Registration,
    private readonly host: RunHost,
  ) {
    this.done = this.loop();
  }

  get taskId(): string {
    return this.task.id;
  }

  get token(): number {
    return this.task.token;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** True once the handler has returned (or thrown) for the last time and the outcome is written. */
  get over(): boolean {
    return this.finished;
  }

  /** True while the run writes a finite outcome or a failure: the run is not over until it is written. */
  get recording(): boolean {
    return this.recordingOutcome;
  }

  stop(reason: string): Promise<void> {
    if (!this.controller.signal.aborted) this.controller.abort(new TaskStoppedError(reason));
    return this.done;
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal;
    const maxAttempts = this.registration.maxAttempts ?? this.host.maxAttempts;
    let outcome: RunOutcome = 'stopped';
    try {
      while (!signal.aborted) {
        const ctx: TaskContext = {
          task: { id: this.task.id, type: this.task.type, payload: this.task.payload, attempts: this.task.attempts, checkpoint: this.task.checkpoint },
          token: this.task.token,
          nodeId: this.host.nodeId,
          signal,
          isValid: () => !signal.aborted && this.host.leaseValid(),
          checkpoint: (state) => this.checkpoint(state),
        };
        let result: unknown;
        try {
          result = await this.registration.handler(ctx);
        } catch (error) {
          if (signal.aborted) break;
          this.recordingOutcome = true;
          const verdict = await this.host.recordFailure(this.task, error, maxAttempts).finally(() => (this.recordingOutcome = false));
          if (verdict !== 'retry') {
            outcome = verdict;
            break;
          }
          this.task = { ...this.task, attempts: this.task.attempts + 1 };
          await sleep(this.host.clock, this.host.backoffMs(this.task.attempts), signal).catch(() => {});
          continue;
        }
        if (signal.aborted) break;
        if (this.registration.mode === 'finite') {
          this.recordingOutcome = true;
          outcome = (await this.host.recordDone(this.task, result)) ? 'done' : 'lost';
          break;
        }
        // A long-running handler is meant to run until revoked; returning early is not an
        // error, but it must not spin.
        await sleep(this.host.clock, this.host.backoffMs(1), signal).catch(() => {});
      }
    } catch (error) {
      this.host.onError(`task ${this.task.id}: run loop failed`, error);
    } finally {
      this.finished = true;
      // Refused and not otherwise ended: the task is no longer ours, so the node forgets it
      // (a run merely stopped stays held, to start again). A result written first stands.
      this.host.ended(this, this.refused && outcome === 'stopped' ? 'lost' : outcome);
    }
  }

  /**
   * A checkpoint is checked before anything is written, then written after the ones asked
   * for before it. It is allowed after the signal aborted (a handler may store where it got
   * to on its way out): the write's condition on owner and token, not the lease, is what
   * keeps a former owner's state out.
   */
  private checkpoint(state: unknown): Promise<void> {
    let json: string;
    try {
      json = encodeCheckpoint(state);
    } catch (error) {
      return Promise.reject(error);
    }
    const write = this.lastCheckpoint.then(() => this.writeCheckpoint(json));
    this.lastCheckpoint = write.catch(() => {});
    return write;
  }

  private async writeCheckpoint(json: string): Promise<void> {
    const refused = () => new CheckpointError('refused', `task ${this.task.id} is no longer this node's (token ${this.task.token}): checkpoint refused`);
    if (this.refused) throw refused();
    if (!(await this.host.saveCheckpoint(this.task, json))) {
      // Another owner may be running the task already: this run must stop at once.
      this.refused = true;
      if (!this.controller.signal.aborted) this.controller.abort(new TaskStoppedError('checkpoint refused: the task is no longer this node\'s'));
      throw refused();
    }
    // The next attempt of this run (after a throw) starts from it too.
    this.task = { ...this.task, checkpoint: JSON.parse(json) as unknown };
  }
}

/** The reason given to `ctx.signal` when this node must stop a task (revoked, moved, fenced, leaving, `superseded` by a newer token). */
export class TaskStoppedError extends Error {
  override name = 'TaskStoppedError';
  constructor(readonly reason: string) {
    super(`task stopped: ${reason}`);
  }
}

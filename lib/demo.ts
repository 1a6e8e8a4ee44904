import { closeSync, openSync, writeSync } from 'node:fs';
import type { TaskContext, TaskHandler } from './tasks.js';

/**
 * The audit log the fault harness reads: one JSON line per event,
 *   {"event":"start"|"work"|"stop"|"effect","task":ID,"node":ID,"token":N,"mono_ns":"<hrtime>"}
 * (`effect`: a finite `demo-job` task's one side effect, see demoJobHandler.)
 * `mono_ns` is always process.hrtime.bigint(), the real monotonic clock shared by every
 * process on the machine, never a skewed test clock. Lines are written synchronously, so a
 * SIGKILL cannot leave half of one behind a later one.
 */
export class AuditLog {
  private readonly fd: number;

  constructor(
    path: string,
    private readonly node: string,
  ) {
    this.fd = openSync(path, 'a');
  }

  write(event: 'start' | 'work' | 'stop' | 'effect', task: string, token: number, monoNs: bigint = process.hrtime.bigint()): void {
    writeSync(this.fd, `${JSON.stringify({ event, task, node: this.node, token, mono_ns: monoNs.toString() })}\n`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** How often the demo handler does a unit of "work". */
export const demoWorkIntervalMs = 100;

/** Options of the demo handler (`keeper worker --demo-stop-delay-ms`, `--demo-stop-delay-every`). */
export interface DemoOptions {
  /**
   * A slow handler to try a leave with: on a leave (the signal's reason is 'leaving'), the
   * run returns this long after its signal instead of at once. It does no work after the
   * signal (it checks before every unit), so the delay only holds up the handover of its
   * task; other stops (a move, a revoke, fencing) stay prompt. Default 0.
   */
  stopDelayMs?: number;
  /** Only every n-th run this worker starts is slow (1: every one). Default 1. */
  stopDelayEvery?: number;
}

/**
 * The built-in `demo` task: a long-running task that does one unit of work every 100 ms
 * until revoked, logging each unit to the audit log. It shows the pattern task code should
 * follow: check `isValid()` before each side effect, stop on the signal.
 *
 * All demo tasks of a worker share one timer (a worker may run a thousand of them; a timer
 * and a promise each per unit of work would be ten thousand allocations a second).
 */
export function demoHandler(audit?: AuditLog, options: DemoOptions = {}): TaskHandler {
  const stopDelayMs = options.stopDelayMs ?? 0;
  const every = Math.max(1, options.stopDelayEvery ?? 1);
  let started = 0;
  const running = new Set<TaskContext>();
  let timer: NodeJS.Timeout | undefined;
  const beat = () => {
    for (const ctx of running) {
      // The timestamp is taken before the check: the lease was valid at that instant, so the
      // event never claims work at a moment the lease had already run out.
      const at = process.hrtime.bigint();
      if (!ctx.signal.aborted && ctx.isValid()) audit?.write('work', ctx.task.id, ctx.token, at);
    }
  };
  return (ctx: TaskContext) =>
    new Promise<void>((resolve) => {
      audit?.write('start', ctx.task.id, ctx.token);
      started += 1;
      const delayMs = stopDelayMs > 0 && started % every === 0 ? stopDelayMs : 0;
      const stop = () => {
        // Removed from the set before the stop line: no work after it.
        running.delete(ctx);
        if (running.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
        }
        const finish = () => {
          audit?.write('stop', ctx.task.id, ctx.token);
          resolve();
        };
        // unref: a slow handler must not keep a worker that has left from exiting.
        const leaving = (ctx.signal.reason as { reason?: unknown } | undefined)?.reason === 'leaving';
        if (delayMs > 0 && leaving) setTimeout(finish, delayMs).unref();
        else finish();
      };
      if (ctx.signal.aborted) return stop();
      running.add(ctx);
      timer ??= setInterval(beat, demoWorkIntervalMs);
      ctx.signal.addEventListener('abort', stop, { once: true });
    });
}

/** How long a `demo-job` works before its side effect, unless its payload says `{"workMs": n}`. */
export const demoJobWorkMs = 2000;

/**
 * The built-in `demo-job` task, finite (register it with `mode: 'finite'`): works for a
 * while (`payload.workMs`, default 2 s, logging a `work` line every 100 ms while its lease
 * holds), then checks `isValid()` immediately before its one side effect, an `effect` line in
 * the audit log, and returns. A run whose lease ran out, or that was signalled, does no
 * effect: it waits for its signal (the run is stopped and the task moves on). What it shows:
 * a finite task's effect happens at most once unless the node that did it failed before it
 * could record the outcome (the fault harness's at-most-once rule checks exactly that).
 */
export function demoJobHandler(audit?: AuditLog): TaskHandler {
  return (ctx: TaskContext) =>
    new Promise<{ token: number }>((resolve, reject) => {
      audit?.write('start', ctx.task.id, ctx.token);
      const payload = ctx.task.payload as { workMs?: unknown } | null | undefined;
      const workMs = typeof payload?.workMs === 'number' && payload.workMs >= 0 ? payload.workMs : demoJobWorkMs;
      const began = Date.now();
      const stop = () => {
        clearInterval(timer);
        audit?.write('stop', ctx.task.id, ctx.token);
        reject(new Error('demo-job stopped before its effect'));
      };
      const timer = setInterval(() => {
        const at = process.hrtime.bigint();
        // Lease gone but not yet told: wait for the signal rather than count a failure.
        if (ctx.signal.aborted || !ctx.isValid()) return;
        if (Date.now() - began < workMs) {
          audit?.write('work', ctx.task.id, ctx.token, at);
          return;
        }
        // The effect follows the check above synchronously: nothing can run in between.
        clearInterval(timer);
        ctx.signal.removeEventListener('abort', stop);
        audit?.write('effect', ctx.task.id, ctx.token, at);
        audit?.write('stop', ctx.task.id, ctx.token);
        resolve({ token: ctx.token });
      }, demoWorkIntervalMs);
      if (ctx.signal.aborted) return stop();
      ctx.signal.addEventListener('abort', stop, { once: true });
    });
}

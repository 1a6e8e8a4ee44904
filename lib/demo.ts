import { closeSync, openSync, writeSync } from 'node:fs';
import type { TaskContext, TaskHandler } from './tasks.js';

/**
 * The audit log the fault harness reads: one JSON line per event,
 *   {"event":"start"|"work"|"stop","task":ID,"node":ID,"token":N,"mono_ns":"<hrtime>"}
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

  write(event: 'start' | 'work' | 'stop', task: string, token: number, monoNs: bigint = process.hrtime.bigint()): void {
    writeSync(this.fd, `${JSON.stringify({ event, task, node: this.node, token, mono_ns: monoNs.toString() })}\n`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** How often the demo handler does a unit of "work". */
export const demoWorkIntervalMs = 100;

/**
 * The built-in `demo` task: a long-running task that does one unit of work every 100 ms
 * until revoked, logging each unit to the audit log. It shows the pattern task code should
 * follow: check `isValid()` before each side effect, stop on the signal.
 *
 * All demo tasks of a worker share one timer (a worker may run a thousand of them; a timer
 * and a promise each per unit of work would be ten thousand allocations a second).
 */
export function demoHandler(audit?: AuditLog): TaskHandler {
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
      const stop = () => {
        // Removed from the set before the stop line: no work after it.
        running.delete(ctx);
        if (running.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
        }
        audit?.write('stop', ctx.task.id, ctx.token);
        resolve();
      };
      if (ctx.signal.aborted) return stop();
      running.add(ctx);
      timer ??= setInterval(beat, demoWorkIntervalMs);
      ctx.signal.addEventListener('abort', stop, { once: true });
    });
}

/**
 * When each task's handler started and stopped on which node, on this process's monotonic
 * clock. Both systems record here from inside their handler, so "a task runs elsewhere" means
 * the same thing for keeper and the baseline: its handler was entered on another node.
 */
interface Run {
  node: string;
  startedAt: number;
  stoppedAt?: number;
}

interface Waiter {
  pending: Set<string>;
  after: number;
  notOn: string;
  resolve: (at: number) => void;
}

export class RunLedger {
  private readonly runs = new Map<string, Run[]>();
  private readonly waiters = new Set<Waiter>();
  /** Starts of a task while another node's run of it had not stopped (two runners at once). */
  overlaps = 0;
  private lastStartAt = 0;

  started(task: string, node: string, at = performance.now()): void {
    const list = this.runs.get(task) ?? [];
    if (list.some((r) => r.stoppedAt === undefined && r.node !== node)) this.overlaps += 1;
    list.push({ node, startedAt: at });
    // Only the latest few runs matter to anyone; long benches move tasks many times.
    if (list.length > 8) list.splice(0, list.length - 8);
    this.runs.set(task, list);
    this.lastStartAt = at;
    for (const waiter of this.waiters) {
      if (node !== waiter.notOn && at >= waiter.after && waiter.pending.delete(task) && waiter.pending.size === 0) {
        this.waiters.delete(waiter);
        waiter.resolve(at);
      }
    }
  }

  stopped(task: string, node: string, at = performance.now()): void {
    const run = this.runs.get(task)?.findLast((r) => r.node === node && r.stoppedAt === undefined);
    if (run) run.stoppedAt = at;
  }

  /** Nodes whose run of the task has not stopped. */
  runners(task: string): string[] {
    return (this.runs.get(task) ?? []).filter((r) => r.stoppedAt === undefined).map((r) => r.node);
  }

  /** How many of `tasks` run on exactly one node right now. */
  runningOnce(tasks: readonly string[]): number {
    let n = 0;
    for (const task of tasks) if (this.runners(task).length === 1) n += 1;
    return n;
  }

  /** Tasks whose run on `node` has not stopped. */
  heldBy(node: string): string[] {
    const out: string[] = [];
    for (const [task, list] of this.runs) if (list.some((r) => r.node === node && r.stoppedAt === undefined)) out.push(task);
    return out;
  }

  /** Time of the most recent start of any task. */
  get lastStart(): number {
    return this.lastStartAt;
  }

  /**
   * Resolves with the time at which every task in `tasks` has started on a node other than
   * `notOn` at or after `after`, or with undefined once `timeoutMs` has passed.
   */
  movedAway(tasks: readonly string[], notOn: string, after: number, timeoutMs: number): Promise<number | undefined> {
    const pending = new Set(tasks.filter((task) => !(this.runs.get(task) ?? []).some((r) => r.node !== notOn && r.startedAt >= after)));
    if (pending.size === 0) return Promise.resolve(after);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        pending,
        after,
        notOn,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** The earliest start of any of `tasks` on another node at or after `after`. */
  firstMoveAt(tasks: readonly string[], notOn: string, after: number): number | undefined {
    let first: number | undefined;
    for (const task of tasks) {
      for (const r of this.runs.get(task) ?? []) {
        if (r.node !== notOn && r.startedAt >= after && (first === undefined || r.startedAt < first)) first = r.startedAt;
      }
    }
    return first;
  }

  /** Tasks of a `movedAway` set that never moved, for reports of censored trials. */
  notMoved(tasks: readonly string[], notOn: string, after: number): string[] {
    return tasks.filter((task) => !(this.runs.get(task) ?? []).some((r) => r.node !== notOn && r.startedAt >= after));
  }
}

/** Polls `condition` until it holds; returns whether it did within `timeoutMs`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 50): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

export const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

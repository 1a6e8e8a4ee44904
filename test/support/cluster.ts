import { expect } from 'vitest';
import { skewedClock, systemClock, type Clock } from '../../lib/clock.js';
import type { KeeperOptions } from '../../lib/config.js';
import type { Store } from '../../lib/store/store.js';
import type { TaskContext } from '../../lib/tasks.js';
import { Worker } from '../../lib/worker.js';

/** Waits until `condition` holds, polling; fails with `what` once the deadline passes. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000, pollMs = 20): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await condition()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

interface ActiveRun {
  node: string;
  token: number;
  ctx: TaskContext;
}

/**
 * Records every run of the test handler: which node started which task with which token,
 * and whether a run started while another node's run of the same task still passed its
 * lease check (the safety violation).
 */
export class Ledger {
  readonly starts: Array<{ task: string; node: string; token: number }> = [];
  readonly violations: string[] = [];
  private readonly active = new Map<string, Set<ActiveRun>>();

  handler(node: string) {
    return (ctx: TaskContext) => {
      const runs = this.active.get(ctx.task.id) ?? new Set<ActiveRun>();
      this.active.set(ctx.task.id, runs);
      for (const other of runs) {
        if (other.node !== node && other.ctx.isValid()) this.violations.push(`${ctx.task.id} started on ${node} while ${other.node} still runs it`);
      }
      const last = this.starts.filter((s) => s.task === ctx.task.id).at(-1);
      if (last && ctx.token < last.token) this.violations.push(`${ctx.task.id}: token ${ctx.token} after ${last.token}`);
      this.starts.push({ task: ctx.task.id, node, token: ctx.token });
      const run: ActiveRun = { node, token: ctx.token, ctx };
      runs.add(run);
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          runs.delete(run);
          resolve();
        }),
      );
    };
  }

  /** Nodes whose run of `task` currently passes its lease check. */
  runners(task: string): string[] {
    return [...(this.active.get(task) ?? [])].filter((r) => r.ctx.isValid()).map((r) => r.node);
  }

  expectSafe(): void {
    expect(this.violations).toEqual([]);
  }
}

export interface NodeSpec {
  id: string;
  store: Store;
  clock?: Clock;
  options?: Partial<KeeperOptions>;
}

export const fastSettings = { periodMs: 250 } satisfies KeeperOptions;

export function makeWorker(spec: NodeSpec, ledger: Ledger, base: KeeperOptions = fastSettings): Worker {
  return new Worker({ doorbellHost: '127.0.0.1', ...base, ...spec.options, nodeId: spec.id, store: spec.store, clock: spec.clock ?? systemClock }).handle('demo', ledger.handler(spec.id));
}

/** A clock that runs `rate` times real speed and is `offsetMs` off. */
export const clockAt = (rate: number, offsetMs: number) => skewedClock(systemClock, rate, offsetMs);

/** How many of `tasks` currently run on exactly one node. */
export function runningOnce(ledger: Ledger, tasks: readonly string[]): number {
  return tasks.filter((t) => ledger.runners(t).length === 1).length;
}

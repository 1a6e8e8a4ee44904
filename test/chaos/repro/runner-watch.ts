import type { TaskContext } from '../../../lib/tasks.js';

/**
 * A demo handler for the reproductions that records, every 20 ms, who passes its lease check
 * for which task: two at once is a double run, and work under a lower token after a higher
 * one is a token regression.
 */
export function watchRunners(): { handler: (node: string) => (ctx: TaskContext) => Promise<void>; doubles: Set<string>; regressions: Set<string> } {
  const runners = new Map<string, Map<string, number>>();
  const highest = new Map<string, number>();
  const doubles = new Set<string>();
  const regressions = new Set<string>();
  const handler = (node: string) => async (ctx: TaskContext) => {
    const map = runners.get(ctx.task.id) ?? new Map<string, number>();
    runners.set(ctx.task.id, map);
    while (!ctx.signal.aborted) {
      if (ctx.isValid()) {
        map.set(node, ctx.token);
        const top = highest.get(ctx.task.id) ?? -1;
        if (ctx.token < top) regressions.add(`${ctx.task.id}: ${node} works with token ${ctx.token} after token ${top} has worked`);
        highest.set(ctx.task.id, Math.max(top, ctx.token));
        if (map.size > 1) doubles.add(`${ctx.task.id}: ${[...map].map(([n, t]) => `${n} (token ${t})`).join(' and ')}`);
      } else map.delete(node);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    map.delete(node);
  };
  return { handler, doubles, regressions };
}

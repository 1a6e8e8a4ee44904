import type { HandlerOptions, TaskHandler } from './tasks.js';

/**
 * A worker's handlers as one value: task type to handler. This is what a user's handler
 * module exports for `keeper worker --handlers`, what `runWorker` takes, and what the
 * testing cluster runs, so one module of handlers serves all three.
 *
 * ```ts
 * export default {
 *   mailbox: async (ctx) => { ... },                                    // long-running
 *   report: { handler: async (ctx) => build(ctx.task.payload), mode: 'finite', maxAttempts: 5 },
 * } satisfies TaskHandlers;
 * ```
 */
export type TaskHandlers = Record<string, TaskHandler<any, any, any> | TaskHandlerEntry>;

/** A handler with its options, as one entry of {@link TaskHandlers}. */
export interface TaskHandlerEntry extends HandlerOptions {
  // `any`: each entry declares its own payload and checkpoint types; the map cannot name them all.
  handler: TaskHandler<any, any, any>;
}

/** Something that can register handlers: a Worker. */
interface HandlerRegistry {
  handle(type: string, handler: TaskHandler, options?: HandlerOptions): unknown;
}

/** A handler map that is not one: what is wrong with it, in a sentence the user can act on. */
export class InvalidHandlersError extends Error {
  override name = 'InvalidHandlersError';
}

const modes = new Set(['long-running', 'finite']);

/**
 * Checks that `value` maps task types to handlers and returns it typed. Refuses, naming the
 * first bad entry: not an object, no entries, an entry that is neither a function nor
 * `{ handler, mode?, maxAttempts? }`, an unknown mode, a bad maxAttempts.
 */
export function checkHandlers(value: unknown, source = 'handlers'): TaskHandlers {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidHandlersError(`${source} must be an object mapping task types to handler functions, got ${describe(value)}`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) throw new InvalidHandlersError(`${source} has no handlers: map at least one task type to a function`);
  for (const [type, entry] of entries) {
    if (typeof entry === 'function') continue;
    if (typeof entry !== 'object' || entry === null || typeof (entry as { handler?: unknown }).handler !== 'function') {
      throw new InvalidHandlersError(`${source}: "${type}" must be a function or { handler, mode, maxAttempts }, got ${describe(entry)}`);
    }
    const { mode, maxAttempts } = entry as TaskHandlerEntry;
    if (mode !== undefined && !modes.has(mode)) throw new InvalidHandlersError(`${source}: "${type}" has mode "${String(mode)}"; use "long-running" or "finite"`);
    if (maxAttempts !== undefined && !(Number.isSafeInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new InvalidHandlersError(`${source}: "${type}" has maxAttempts ${String(maxAttempts)}; use a whole number of at least 1`);
    }
  }
  return value as TaskHandlers;
}

/** Registers every handler of the map on the worker. */
export function registerHandlers(worker: HandlerRegistry, handlers: TaskHandlers): void {
  for (const [type, entry] of Object.entries(handlers)) {
    if (typeof entry === 'function') worker.handle(type, entry);
    else {
      const { handler, ...options } = entry;
      worker.handle(type, handler, options);
    }
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

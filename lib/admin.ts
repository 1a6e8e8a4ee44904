import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { nodeIdSchema } from './config.js';
import { limits, taskItemBytes } from './store/items.js';
import { formatLabels, labelsSchema, type Labels } from './labels.js';
import { unplaceableReason } from './protocol/placement.js';
import { taskPriority, taskWeight, type NodeItem, type Page, type Store, type TaskItem } from './store/store.js';

/**
 * Operator-side task management, shared by the CLI (`keeper task ...`, `keeper status`) and
 * the task API Lambda functions, so both validate the same way and change the table the
 * same way: validation first, then one conditional write, then a notification to the
 * owner; never a half-written state.
 */
export class InvalidInputError extends Error {
  override name = 'InvalidInputError';
  readonly status = 400;
}
/** A task payload over the size limit (status 413): send a smaller payload, or a reference to where the data is. */
export class PayloadTooLargeError extends Error {
  override name = 'PayloadTooLargeError';
  readonly status = 413;
}
/**
 * A different task already has that id; the task cannot be released or updated in its state
 * (done, failed); or an update's `ifToken` is no longer the task's token (status 409).
 */
export class TaskConflictError extends Error {
  override name = 'TaskConflictError';
  readonly status = 409;
}
/** No task with that id (status 404). */
export class TaskNotFoundError extends Error {
  override name = 'TaskNotFoundError';
  readonly status = 404;
}
/** No node with that id (status 404). */
export class NodeNotFoundError extends Error {
  override name = 'NodeNotFoundError';
  readonly status = 404;
}
/** The node is dead or has left: there is nothing to drain (status 409). */
export class NodeConflictError extends Error {
  override name = 'NodeConflictError';
  readonly status = 409;
}

export const taskIdSchema = z
  .string({ error: 'id must be a string' })
  .min(1, 'id must not be empty')
  .max(limits.taskIdLength, `id must be at most ${limits.taskIdLength} characters`)
  .regex(/^[A-Za-z0-9._:/@+=-]+$/, 'id may contain only letters, digits and . _ : / @ + = -');

export const taskTypeSchema = z
  .string({ error: 'type must be a string' })
  .min(1, 'type must not be empty')
  .max(64, 'type must be at most 64 characters')
  .regex(/^[A-Za-z0-9._-]+$/, 'type may contain only letters, digits and . _ -');

/** Priorities a task may have: whole numbers, higher placed first when capacity is short (default 0). */
export const priorityLimit = 1_000_000;
const priorityMessage = `priority must be a whole number from -${priorityLimit} to ${priorityLimit}`;

export const taskPrioritySchema = z
  .number({ error: priorityMessage })
  .int(priorityMessage)
  .min(-priorityLimit, priorityMessage)
  .max(priorityLimit, priorityMessage);

/** Heaviest weight a task may have; capacities are in the same units. */
export const weightLimit = 1_000_000;
const weightMessage = `weight must be a whole number from 1 to ${weightLimit}`;

/** A task's weight: how much of a node's capacity it takes, a whole number >= 1 (default 1). */
export const taskWeightSchema = z.number({ error: weightMessage }).int(weightMessage).min(1, weightMessage).max(weightLimit, weightMessage);

export const newTaskSchema = z
  .object({
    id: taskIdSchema,
    type: taskTypeSchema.default('demo'),
    payload: z.unknown().optional(),
    priority: taskPrioritySchema.default(0),
    weight: taskWeightSchema.default(1),
    /** Labels a node must have, every one, to run the task: `{ "zone": "eu-west-1a" }`. */
    require: labelsSchema.optional(),
    /** Labels the task would rather run where they are; never a reason to leave it unowned. */
    prefer: labelsSchema.optional(),
  })
  .strict();

export type NewTask = z.input<typeof newTaskSchema>;

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid input';
  if (issue.code === 'unrecognized_keys') return `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  const path = issue.path.join('.');
  return path && !issue.message.startsWith(path) ? `${path}: ${issue.message}` : issue.message;
}

export function parseTaskId(id: unknown): string {
  const parsed = taskIdSchema.safeParse(id);
  if (!parsed.success) throw new InvalidInputError(firstIssue(parsed.error));
  return parsed.data;
}

/** A payload as it is stored: JSON within the item-size budget (400 or 413 otherwise), as JSON.parse gives it back. */
function checkPayload(payload: unknown): unknown {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch {
    throw new InvalidInputError('payload must be JSON');
  }
  if (json === undefined) throw new InvalidInputError('payload must be JSON');
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > limits.payloadBytes) throw new PayloadTooLargeError(`payload is ${bytes} bytes; the limit is ${limits.payloadBytes} bytes`);
  return JSON.parse(json) as unknown;
}

/** A task as operators see it: its priority and weight always shown, 0 and 1 when the item stores none. */
function described(task: TaskItem): TaskItem {
  return { ...task, priority: taskPriority(task), weight: taskWeight(task) };
}

/** A ready task that no live node could take, and why. */
export interface Unplaceable {
  id: string;
  reason: string;
}

/** Validates a new task; the payload must be JSON and fit the item-size budget. */
export function parseNewTask(input: unknown): { id: string; type: string; payload: unknown; priority: number; weight: number; require: Labels; prefer: Labels } {
  const parsed = newTaskSchema.safeParse(input);
  if (!parsed.success) throw new InvalidInputError(firstIssue(parsed.error));
  const { id, type, priority, weight } = parsed.data;
  return { id, type, payload: checkPayload(parsed.data.payload ?? null), priority, weight, require: parsed.data.require ?? {}, prefer: parsed.data.prefer ?? {} };
}

/**
 * A payload update: the new payload (any JSON, null included; required) and, optionally,
 * the token the caller read (`ifToken`): the update then lands only if the task still has it.
 */
export const payloadUpdateSchema = z
  .object({
    payload: z.unknown().refine((value) => value !== undefined, 'payload is required: the new payload, as JSON'),
    ifToken: z
      .number({ error: 'ifToken must be a whole number >= 0 (the token you read)' })
      .int('ifToken must be a whole number >= 0 (the token you read)')
      .nonnegative('ifToken must be a whole number >= 0 (the token you read)')
      .max(Number.MAX_SAFE_INTEGER, 'ifToken must be a whole number >= 0 (the token you read)')
      .optional(),
  })
  .strict();

/** The input of TaskAdmin.update: `{ payload, ifToken? }`, as the task API's PATCH body carries it. */
export type PayloadUpdate = z.input<typeof payloadUpdateSchema>;

/** Validates a payload update (400, or 413 for a payload over the budget) before anything is read or written. */
export function parsePayloadUpdate(input: unknown): { payload: unknown; ifToken?: number } {
  const parsed = payloadUpdateSchema.safeParse(input);
  if (!parsed.success) throw new InvalidInputError(firstIssue(parsed.error));
  const payload = checkPayload(parsed.data.payload);
  return parsed.data.ifToken === undefined ? { payload } : { payload, ifToken: parsed.data.ifToken };
}

/** What TaskAdmin.update did: the task as it is now, and whether the update wrote. */
export interface PayloadUpdateOutcome {
  /** The task after the update: its `owner` restarts it with the new payload (null: it waits in the pool). */
  task: TaskItem;
  /** False if the task had that payload already: nothing was written, nothing restarts. */
  updated: boolean;
}

/** Reads and compare-and-sets an update makes at most without `ifToken` while other writers keep changing the token. */
const updateAttempts = 5;

/** Adds, reads, lists, releases and removes tasks, validating input the same way for the CLI, the task API and tests. */
export class TaskAdmin {
  constructor(
    private readonly store: Store,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Creates a task (idempotent on id): creating the same task twice is fine, creating a
   * different task under an existing id is a conflict.
   */
  async add(input: unknown): Promise<{ created: boolean; task: TaskItem }> {
    const task = parseNewTask(input);
    const outcome = await this.store.createTask(task, this.now().toISOString());
    const stored = await this.store.getTask(task.id);
    if (outcome === 'exists') {
      if (!stored || stored.type !== task.type || !isDeepStrictEqual(stored.payload, task.payload)) {
        throw new TaskConflictError(`task "${task.id}" already exists with a different type or payload`);
      }
      if (taskPriority(stored) !== task.priority) {
        throw new TaskConflictError(`task "${task.id}" already exists with priority ${taskPriority(stored)}; a task's priority is set when it is added`);
      }
      if (taskWeight(stored) !== task.weight) {
        throw new TaskConflictError(`task "${task.id}" already exists with weight ${taskWeight(stored)}; a task's weight is set when it is added`);
      }
      for (const field of ['require', 'prefer'] as const) {
        if (!isDeepStrictEqual(stored[field] ?? {}, task[field])) {
          throw new TaskConflictError(`task "${task.id}" already exists with ${field} ${formatLabels(stored[field])}; a task's ${field} is set when it is added`);
        }
      }
      return { created: false, task: described(stored) };
    }
    await this.store.bumpCluster('tasks');
    return { created: true, task: described(stored!) };
  }

  async get(id: unknown): Promise<TaskItem> {
    const task = await this.store.getTask(parseTaskId(id));
    if (!task) throw new TaskNotFoundError(`task "${String(id)}" does not exist`);
    return described(task);
  }

  async list(limit = 100, cursor?: string): Promise<Page<TaskItem>> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidInputError('limit must be a whole number from 1 to 1000');
    const page = await this.store.listTasks(limit, cursor);
    return { ...page, items: page.items.map(described) };
  }

  /** Deletes a task and tells its owner, which stops running it. */
  async remove(id: unknown): Promise<TaskItem> {
    const removed = await this.store.deleteTask(parseTaskId(id));
    if (!removed) throw new TaskNotFoundError(`task "${String(id)}" does not exist`);
    if (removed.owner) await this.store.notify(removed.owner);
    return described(removed);
  }

  /**
   * Force-release: the task goes back to the pool. A live owner is asked to stop it first
   * (it does within one period), so the task never runs twice; a task whose owner is gone
   * is released at once.
   */
  async release(id: unknown): Promise<{ task: TaskItem; pending: boolean }> {
    const taskId = parseTaskId(id);
    const task = await this.store.getTask(taskId);
    if (!task) throw new TaskNotFoundError(`task "${taskId}" does not exist`);
    if (task.state !== 'ready') throw new TaskConflictError(`task "${taskId}" is ${task.state}; only ready tasks can be released`);
    if (task.owner === null) return { task: described(task), pending: false };
    const owner = await this.store.getNode(task.owner);
    if (owner && owner.state === 'alive' && owner.inc === task.ownerInc) {
      const marked = await this.store.requestRelease(taskId);
      await this.store.notify(task.owner);
      return { task: described(marked ?? task), pending: true };
    }
    const moved = await this.store.moveTask(taskId, task, { owner: null, ownerInc: 0 });
    if (!moved) throw new TaskConflictError(`task "${taskId}" changed owner meanwhile; try again`);
    await this.store.bumpCluster('tasks');
    return { task: described(moved), pending: false };
  }

  /**
   * Gives a ready task a new payload. The write is a compare-and-set on the task's token,
   * which it raises by one: the owner learns of it from its inbox (notified here, as for a
   * release), finds its run's token behind the table's, stops that run and, once it is over,
   * starts the task again with the new payload and token. An unowned task stays in the pool
   * with the new payload, and the nodes are told to look at the pool.
   *
   * With `ifToken`, the update lands only while the task's token is still that one (409
   * otherwise: it moved, restarted or was updated since it was read). Without it, the last
   * writer wins: the update is made on the token just read, and read again if that changed.
   * Either way it is one atomic write. The payload the task has already is no change (200,
   * `updated: false`), so that a retried request restarts nothing (its owner is told again,
   * in case the first attempt landed but its caller never heard).
   *
   * Refused with nothing written: bad input (400; 413 for a payload over the budget), an
   * unknown task (404), a task that is done or failed (409: its result or error stands).
   */
  async update(id: unknown, input: unknown): Promise<PayloadUpdateOutcome> {
    const taskId = parseTaskId(id);
    const { payload, ifToken } = parsePayloadUpdate(input);
    for (let attempt = 1; attempt <= updateAttempts; attempt++) {
      const task = await this.store.getTask(taskId);
      if (!task) throw new TaskNotFoundError(`task "${taskId}" does not exist`);
      if (task.state !== 'ready') {
        const then = task.state === 'done' ? 'its result stands: add a new task to run it with this payload' : 'remove it and add it again to run it afresh with this payload';
        throw new TaskConflictError(`task "${taskId}" is ${task.state}; only ready tasks can be updated (${then})`);
      }
      if (isDeepStrictEqual(task.payload, payload)) {
        // Told again all the same: this may be the retry of an update that landed but whose
        // caller never heard (a lost reply), and so never told anyone.
        await this.tellOf(task);
        return { task: described(task), updated: false };
      }
      if (ifToken !== undefined && task.token !== ifToken) {
        throw new TaskConflictError(`task "${taskId}" has token ${task.token}, not ${ifToken}: it changed since you read it; read it again and retry`);
      }
      const outcome = await this.store.updatePayload(taskId, task.token, { payload, itemBytes: taskItemBytes({ ...task, payload }) });
      if (!outcome.ok) continue; // changed between the read and the write: read again (which says why)
      const updated = outcome.task ?? { ...task, payload, token: task.token + 1, attempts: 0 };
      await this.tellOf(updated);
      return { task: described(updated), updated: true };
    }
    throw new TaskConflictError(`task "${taskId}" kept changing while it was being updated; try again`);
  }

  /** After a payload update: the owner restarts the task once told (its inbox); an unowned one is claimed once the nodes look at the pool. */
  private async tellOf(task: TaskItem): Promise<void> {
    if (task.owner) await this.store.notify(task.owner);
    else await this.store.bumpCluster('tasks');
  }

  /**
   * Drains a live node: it takes no new tasks and hands its own to other nodes, a few per
   * period, each moving once; peers place nothing on it. It sees the flag with its next
   * heartbeat, and keeps it until undrain() (also if it is declared dead and rejoins; a new
   * process under the same id starts undrained). Unknown nodes (404) and dead or departed
   * ones (409) are refused with nothing written.
   */
  drain(nodeId: unknown): Promise<NodeItem> {
    return this.setDraining(nodeId, true);
  }

  /** Lifts a drain: the node takes tasks again (claims, placements, rebalancing towards it). Idempotent. */
  undrain(nodeId: unknown): Promise<NodeItem> {
    return this.setDraining(nodeId, false);
  }

  private async setDraining(nodeId: unknown, draining: boolean): Promise<NodeItem> {
    const parsed = nodeIdSchema.safeParse(nodeId);
    if (!parsed.success) throw new InvalidInputError(firstIssue(parsed.error));
    const id = parsed.data;
    const outcome = await this.store.setDraining(id, draining);
    if (outcome.ok) {
      if (!outcome.node) throw new Error(`node "${id}": the flag is written, but the node item is unreadable (its next heartbeat repairs it)`);
      return outcome.node;
    }
    // The write's condition (a live node) is the check: no read first that could go stale.
    if (!outcome.current) throw new NodeNotFoundError(`node "${id}" does not exist`);
    const state = outcome.current.state === 'left' ? 'has left' : `is ${outcome.current.state}`;
    throw new NodeConflictError(`node "${id}" ${state}; only a live node can be ${draining ? 'drained' : 'undrained'}`);
  }

  /**
   * Every node item and every task, for `keeper status`, and the free ready tasks that no
   * live node could take as the nodes stand (`unplaceable`, each with the reason): they stay
   * in the pool, and the health function counts them among the orphaned tasks.
   */
  async status(): Promise<{ nodes: NodeItem[]; tasks: TaskItem[]; unplaceable: Unplaceable[] }> {
    const members = await this.store.listMembers();
    const { nodes } = await this.store.readNodes(members.map((m) => m.id));
    const tasks: TaskItem[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.store.listTasks(1000, cursor);
      tasks.push(...page.items.map(described));
      cursor = page.cursor;
    } while (cursor);
    const sorted = [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    return { nodes: sorted, tasks, unplaceable: unplaceableTasks(sorted, tasks) };
  }
}

/**
 * The free ready tasks no live node (alive, not leaving) could take, whatever its load, with
 * the reason (placement.ts, unplaceableReason). None while no node is live.
 */
export function unplaceableTasks(nodes: readonly NodeItem[], tasks: readonly TaskItem[]): Unplaceable[] {
  const live = nodes.filter((n) => n.state === 'alive' && !n.leaving);
  // With no live node at all, every task waits for one: the live-nodes alarm says that.
  if (live.length === 0) return [];
  const out: Unplaceable[] = [];
  for (const task of tasks) {
    if (task.state !== 'ready' || task.owner !== null) continue;
    const reason = unplaceableReason(task, live);
    if (reason !== undefined) out.push({ id: task.id, reason });
  }
  return out;
}

import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { nodeIdSchema } from './config.js';
import { limits } from './store/items.js';
import { taskPriority, type NodeItem, type Page, type Store, type TaskItem } from './store/store.js';

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
/** A different task already has that id, or the task cannot be released in its state (status 409). */
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

export const newTaskSchema = z
  .object({
    id: taskIdSchema,
    type: taskTypeSchema.default('demo'),
    payload: z.unknown().optional(),
    priority: taskPrioritySchema.default(0),
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

/** Validates a new task; the payload must be JSON and fit the item-size budget. */
export function parseNewTask(input: unknown): { id: string; type: string; payload: unknown; priority: number } {
  const parsed = newTaskSchema.safeParse(input);
  if (!parsed.success) throw new InvalidInputError(firstIssue(parsed.error));
  const payload = parsed.data.payload ?? null;
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch {
    throw new InvalidInputError('payload must be JSON');
  }
  if (json === undefined) throw new InvalidInputError('payload must be JSON');
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > limits.payloadBytes) throw new PayloadTooLargeError(`payload is ${bytes} bytes; the limit is ${limits.payloadBytes} bytes`);
  return { id: parsed.data.id, type: parsed.data.type, payload: JSON.parse(json) as unknown, priority: parsed.data.priority };
}

/** A task as operators see it: its priority always shown, 0 when the item stores none. */
function described(task: TaskItem): TaskItem {
  return { ...task, priority: taskPriority(task) };
}

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

  /** Every node item and every task, for `keeper status`. */
  async status(): Promise<{ nodes: NodeItem[]; tasks: TaskItem[] }> {
    const members = await this.store.listMembers();
    const { nodes } = await this.store.readNodes(members.map((m) => m.id));
    const tasks: TaskItem[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.store.listTasks(1000, cursor);
      tasks.push(...page.items.map(described));
      cursor = page.cursor;
    } while (cursor);
    return { nodes: [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), tasks };
  }
}

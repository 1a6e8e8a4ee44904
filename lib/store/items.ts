import { z } from 'zod';
import { ringKey } from '../protocol/ring.js';
import type { ClusterItem, NewTaskRecord, NodeItem, Notified, TaskHead, TaskItem } from './store.js';

/**
 * The table's key design, written down once.
 *
 *   item      pk               sk         other keys
 *   node      node#<nodeId>    node       member = "cluster", ring = <ring key>  -> index "members" (member, ring)
 *   task      task#<taskId>    task       owner  = <nodeId> | "#free", slot      -> index "byOwner" (owner, slot)
 *   cluster   cluster          cluster
 *
 * - One partition per node: every node rewrites its own item once per period, so
 *   heartbeats spread over partitions instead of heating one.
 * - "members" is a sparse index over node items, sorted by ring position (the hash of the
 *   id, see placement.ts), projecting only id and state. A node finds its ring neighbours
 *   with one small query, so joins, leaves and deaths cost O(k) reads, not a read of the
 *   whole membership by every node. Heartbeats change neither its keys nor its projected
 *   attributes, so they cost no index writes.
 * - "byOwner" finds the tasks of one owner, and the tasks waiting for one ("#free"), without
 *   scanning. Done and failed tasks drop the attribute and so leave the index. It projects only
 *   what finding, placing and moving a task needs (taskHeadAttributes), never the payload: a
 *   node's periodic look at its own tasks, and every index write of a move, cost the same
 *   whatever the payloads weigh, and a failed run's attempts and error cost no index write. It is sorted by
 *   `slot`, the task's position on the same ring as the nodes (`taskSlot`), so that each node
 *   reads the free tasks of its own stretch of the ring: in a large cluster the nodes' claim
 *   reads are disjoint instead of every node reading the same front of the pool.
 * - The cluster item holds a change counter for unowned tasks: nodes look for tasks to claim
 *   when it moves, instead of querying for them every period.
 */
export const keys = {
  node: (id: string) => ({ pk: `node#${id}`, sk: 'node' }),
  task: (id: string) => ({ pk: `task#${id}`, sk: 'task' }),
  cluster: { pk: 'cluster', sk: 'cluster' },
  memberPartition: 'cluster',
  freeOwner: '#free',
  membersIndex: 'members',
  ownerIndex: 'byOwner',
} as const;

/** A task's position on the ring (hash of its id, then the id): the owner index's sort key. */
export function taskSlot(id: string): string {
  return ringKey(id);
}

const count = z.number().int().nonnegative();

export const watchRecordSchema = z.object({ inc: count, counter: count, since: count });

export const nodeItemSchema = z.object({
  id: z.string().min(1),
  inc: count,
  counter: count,
  state: z.enum(['alive', 'dead', 'left']),
  inbox: count,
  taskCount: count,
  load: count.optional(),
  capacity: count,
  types: z.array(z.string()),
  watch: z.record(z.string(), watchRecordSchema),
  neighbours: count.default(0),
  settings: z
    .object({ periodMs: z.number(), staleTicks: z.number(), driftBound: z.number(), fenceMs: z.number(), handlerStopMs: z.number(), requestTimeoutMs: z.number().optional() })
    .optional(),
  deadBy: z.string().optional(),
  joinedAt: z.string(),
  bell: z.string().max(300).optional(),
  draining: z.boolean().optional(),
  version: z.string().min(1).max(256).optional(),
  leaving: z.boolean().optional(),
  labels: z.record(z.string(), z.string()).optional(),
});

/**
 * A run's checkpoint is stored as JSON text, not as a DynamoDB map: its size is then exactly
 * the bytes that were checked against limits.checkpointBytes, any JSON value goes in
 * (DynamoDB refuses numbers outside its range, lib-dynamodb unsafe integers), and both stores
 * hold the very same thing. Text that is not JSON makes the task item corrupt: running the
 * task from scratch could redo work its checkpoint said was done.
 */
const checkpointText = z
  .string()
  .refine((text) => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  }, 'checkpoint is not JSON')
  .transform((text): unknown => JSON.parse(text));

export const taskItemSchema = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  payload: z.unknown(),
  owner: z.string().nullable(),
  ownerInc: count,
  token: count,
  state: z.enum(['ready', 'done', 'failed']),
  attempts: count,
  result: z.unknown().optional(),
  error: z.string().optional(),
  releaseRequested: z.boolean().optional(),
  previousOwner: z.string().optional(),
  itemBytes: count.optional(),
  priority: z.number().int().optional(),
  weight: z.number().int().positive().optional(),
  require: z.record(z.string(), z.string()).optional(),
  prefer: z.record(z.string(), z.string()).optional(),
  createdAt: z.string(),
  checkpoint: checkpointText.optional(),
});

/** Non-key attributes the owner index carries (its keys and the table's, pk holding the id, come anyway). */
export const taskHeadAttributes = ['type', 'ownerInc', 'token', 'releaseRequested', 'itemBytes', 'priority', 'weight', 'require', 'prefer'] as const;

const taskHeadSchema = z.object({
  pk: z.string().startsWith('task#'),
  type: z.string().min(1),
  owner: z.string().min(1),
  ownerInc: count,
  token: count,
  releaseRequested: z.boolean().optional(),
  itemBytes: count.optional(),
  priority: z.number().int().optional(),
  weight: z.number().int().positive().optional(),
  require: z.record(z.string(), z.string()).optional(),
  prefer: z.record(z.string(), z.string()).optional(),
});

/**
 * A new task's stored record (without its keys). A priority is stored only when it is not the
 * default 0, a weight only when it is not the default 1, require and prefer only when they
 * name labels, so that tasks without them are stored exactly as before these existed.
 */
export function newTaskRecord(task: NewTaskRecord, createdAt: string): Record<string, unknown> {
  const priority = task.priority ? { priority: task.priority } : {};
  const weight = task.weight !== undefined && task.weight !== 1 ? { weight: task.weight } : {};
  const require = task.require && Object.keys(task.require).length > 0 ? { require: task.require } : {};
  const prefer = task.prefer && Object.keys(task.prefer).length > 0 ? { prefer: task.prefer } : {};
  const record = {
    id: task.id,
    type: task.type,
    payload: task.payload,
    slot: taskSlot(task.id),
    owner: keys.freeOwner,
    ownerInc: 0,
    token: 0,
    state: 'ready',
    attempts: 0,
    ...priority,
    ...weight,
    ...require,
    ...prefer,
    createdAt,
  };
  // As JSON plus room for the keys and names: close enough to DynamoDB's item size to budget a transaction.
  return { ...record, itemBytes: Buffer.byteLength(JSON.stringify(record)) + 100 };
}

/** The itemBytes a task records, as its creation would have counted it: for a payload update, which changes the size. */
export function taskItemBytes(task: { id: string; type: string; payload: unknown; createdAt: string }): number {
  return newTaskRecord(task, task.createdAt)['itemBytes'] as number;
}

export const clusterItemSchema = z.object({ tasks: count.default(0) });

export type Warn = (message: string) => void;

/** Turns a stored node record into a NodeItem, or warns and returns undefined if it is corrupt. */
export function parseNode(raw: Record<string, unknown>, warn: Warn): NodeItem | undefined {
  const parsed = nodeItemSchema.safeParse(raw);
  if (parsed.success) return parsed.data as NodeItem;
  warn(`skipping corrupt node item ${String(raw['pk'] ?? raw['id'])}: ${describe(parsed.error)}`);
  return undefined;
}

/** Turns a stored task record into a TaskItem ("#free" becomes owner null), or warns and returns undefined. */
export function parseTask(raw: Record<string, unknown>, warn: Warn): TaskItem | undefined {
  const owner = raw['owner'] === keys.freeOwner || raw['owner'] === undefined ? null : raw['owner'];
  const previousOwner = raw['previousOwner'] === keys.freeOwner ? undefined : raw['previousOwner'];
  const parsed = taskItemSchema.safeParse({ ...raw, owner, previousOwner });
  if (parsed.success) return parsed.data as TaskItem;
  warn(`skipping corrupt task item ${String(raw['pk'] ?? raw['id'])}: ${describe(parsed.error)}`);
  return undefined;
}

/** Turns an owner index entry (or any stored task record) into a TaskHead, or warns and returns undefined. */
export function parseTaskHead(raw: Record<string, unknown>, warn: Warn): TaskHead | undefined {
  const parsed = taskHeadSchema.safeParse(raw);
  if (!parsed.success) {
    warn(`skipping corrupt task entry ${String(raw['pk'] ?? raw['id'])}: ${describe(parsed.error)}`);
    return undefined;
  }
  const { pk, owner, releaseRequested, itemBytes, priority, weight, require, prefer, ...rest } = parsed.data;
  return {
    id: pk.slice(keys.task('').pk.length),
    ...rest,
    owner: owner === keys.freeOwner ? null : owner,
    ...(releaseRequested === undefined ? {} : { releaseRequested }),
    ...(itemBytes === undefined ? {} : { itemBytes }),
    ...(priority ? { priority } : {}),
    ...(weight !== undefined && weight !== 1 ? { weight } : {}),
    ...(require && Object.keys(require).length > 0 ? { require } : {}),
    ...(prefer && Object.keys(prefer).length > 0 ? { prefer } : {}),
  };
}

/** The inbox and doorbell of a node item as a notification returned it. */
export function notified(raw: Record<string, unknown> | undefined): Notified | undefined {
  const inbox = raw?.['inbox'];
  if (typeof inbox !== 'number') return undefined;
  const bell = raw?.['bell'];
  return typeof bell === 'string' ? { inbox, bell } : { inbox };
}

export function parseCluster(raw: Record<string, unknown> | undefined): ClusterItem {
  const parsed = clusterItemSchema.safeParse(raw ?? {});
  return parsed.success ? parsed.data : { tasks: 0 };
}

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || 'item'}: ${i.message}`)
    .join('; ');
}

/** The stored owner attribute for a domain owner: unowned ready tasks sit in the index under "#free". */
export function ownerAttribute(owner: string | null, state: TaskItem['state']): string | undefined {
  if (state !== 'ready') return undefined;
  return owner ?? keys.freeOwner;
}

/** Size limits of task ids and payloads, which TaskAdmin enforces. */
export const limits = {
  /** Longest task id; the id is part of the key (DynamoDB allows 2048 bytes for a partition key). */
  taskIdLength: 256,
  /** Payload budget, well under DynamoDB's 400 KB item limit so owner changes never fail on size. */
  payloadBytes: 256 * 1024,
  /**
   * Checkpoint budget (its JSON text, in UTF-8 bytes). With the payload's 256 KB it leaves over
   * 100 KB of the item for the rest (result, error, bookkeeping), and 25 checkpoints add at
   * most 800 KB to a batch move, which stays within DynamoDB's 4 MB per transaction although
   * itemBytes (recorded at creation) does not count them.
   */
  checkpointBytes: 32 * 1024,
};

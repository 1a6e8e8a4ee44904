import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { z } from 'zod';
import { TaskAdmin } from '../lib/admin.js';
import { storeFromEnv } from './environment.js';
import { HttpProblem, httpHandler, type HttpResult } from './http.js';

/**
 * The task API: one Lambda function per operation, so that each holds only the table rights
 * it needs (see lib/cdk/keeper-cluster.ts).
 *
 *   POST   /tasks                     create (idempotent on id)   201 created, 200 already there
 *   GET    /tasks?limit=&cursor=      list, one page              200 { items, cursor? }
 *   GET    /tasks/{id}                get                         200 task
 *   DELETE /tasks/{id}                delete (the owner stops it) 200 { deleted }
 *   PATCH  /tasks/{id}                new payload { payload, ifToken? }  200 { task, updated }
 *   POST   /tasks/{id}/release        force-release               202 owner asked, 200 released
 *   POST   /nodes/{id}/drain          drain a live node           200 node (404 unknown, 409 dead or left)
 *   POST   /nodes/{id}/undrain        end its drain               200 node (idempotent)
 *
 * Task ids may contain "/", so the routes use a greedy path parameter and the release route
 * is told apart by its last segment. Every check of a task's id, type and payload is
 * TaskAdmin's own; this file only takes requests apart (and checks the query string's syntax).
 */

// ---------------------------------------------------------------- plain operations

export async function createTask(admin: TaskAdmin, body: unknown): Promise<HttpResult> {
  const { created, task } = await admin.add(body);
  return { statusCode: created ? 201 : 200, body: { created, task } };
}

export async function getTask(admin: TaskAdmin, id: string): Promise<HttpResult> {
  return { statusCode: 200, body: await admin.get(id) };
}

const listQuerySchema = z
  .object({
    limit: z.string().regex(/^\d+$/, 'limit must be a whole number from 1 to 1000').optional(),
    cursor: z.string().optional(),
  })
  .strict();

export async function listTasks(admin: TaskAdmin, query: Record<string, string | undefined> = {}): Promise<HttpResult> {
  const parsed = listQuerySchema.safeParse(query);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const message = issue.code === 'unrecognized_keys' ? `unknown query parameter ${issue.keys.map((k) => `"${k}"`).join(', ')}; use limit and cursor` : issue.message;
    throw new HttpProblem(400, 'InvalidInput', message);
  }
  const { limit, cursor } = parsed.data;
  const page = await admin.list(limit === undefined ? undefined : Number(limit), cursor);
  return { statusCode: 200, body: page.cursor ? { items: page.items, cursor: page.cursor } : { items: page.items } };
}

/**
 * Gives a ready task a new payload (TaskAdmin.update: its owner restarts it under a new token;
 * an unowned one waits in the pool with it). The body is `{ "payload": <JSON>, "ifToken"?: n }`,
 * checked with zod by TaskAdmin: 400 for a bad body, 413 for a payload over the budget, 404
 * for an unknown task, 409 for a done or failed one or a token that moved on; nothing written.
 */
export async function updateTask(admin: TaskAdmin, id: string, body: unknown): Promise<HttpResult> {
  const { task, updated } = await admin.update(id, body);
  return { statusCode: 200, body: { task, updated } };
}

export async function deleteTask(admin: TaskAdmin, id: string): Promise<HttpResult> {
  return { statusCode: 200, body: { deleted: await admin.remove(id) } };
}

/** Drains a node (`draining` true) or ends its drain; TaskAdmin refuses an unknown (404), dead or departed (409) node. */
export async function drainNode(admin: TaskAdmin, id: string, draining: boolean): Promise<HttpResult> {
  return { statusCode: 200, body: { node: draining ? await admin.drain(id) : await admin.undrain(id) } };
}

export async function releaseTask(admin: TaskAdmin, id: string): Promise<HttpResult> {
  const { task, pending } = await admin.release(id);
  // 202: the owner has been asked and lets go within one period; 200: the task is in the pool.
  return { statusCode: pending ? 202 : 200, body: { task, pending } };
}

// ---------------------------------------------------------------- requests

const releaseSuffix = '/release';

/** The {id+} path parameter. Ids never contain "%", so a "%" can only come from URL encoding. */
export function pathId(event: APIGatewayProxyEventV2): string {
  const raw = event.pathParameters?.['id'] ?? '';
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpProblem(400, 'InvalidInput', 'the task id in the path is not valid URL encoding');
  }
}

/** POST /tasks/{id}/release: the path parameter is the id followed by "/release". */
export function releaseId(event: APIGatewayProxyEventV2): string {
  const path = pathId(event);
  if (!path.endsWith(releaseSuffix) || path.length === releaseSuffix.length) {
    throw new HttpProblem(404, 'NotFound', 'no such route: to release a task, POST /tasks/{id}/release');
  }
  return path.slice(0, -releaseSuffix.length);
}

/** Whether a request to the drain function asks to drain (POST /nodes/{id}/drain) or to end a drain (/undrain). */
export function drainWanted(event: APIGatewayProxyEventV2): boolean {
  if (event.routeKey.endsWith('/drain')) return true;
  if (event.routeKey.endsWith('/undrain')) return false;
  throw new HttpProblem(404, 'NotFound', 'no such route: POST /nodes/{id}/drain or /nodes/{id}/undrain');
}

const admin = () => new TaskAdmin(storeFromEnv());

// ---------------------------------------------------------------- Lambda handlers

export const create = httpHandler((event) => createTask(admin(), event.body as unknown), { jsonBody: true });
export const get = httpHandler((event) => getTask(admin(), pathId(event)));
export const list = httpHandler((event) => listTasks(admin(), event.queryStringParameters));
export const update = httpHandler((event) => updateTask(admin(), pathId(event), event.body as unknown), { jsonBody: true });
export const remove = httpHandler((event) => deleteTask(admin(), pathId(event)));
export const release = httpHandler((event) => releaseTask(admin(), releaseId(event)));
/** Both node routes: the operator's drain and undrain need the same single right (UpdateItem on a node item). */
export const drain = httpHandler((event) => drainNode(admin(), event.pathParameters?.['id'] ?? '', drainWanted(event)));

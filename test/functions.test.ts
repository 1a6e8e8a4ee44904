import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context, ScheduledEvent } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidInputError, TaskAdmin, TaskNotFoundError } from '../lib/admin.js';
import { healthWindowMs, resolveConfig } from '../lib/config.js';
import { limits } from '../lib/store/items.js';
import { Worker } from '../lib/worker.js';
import { fastSettings, Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * The Lambda handlers, invoked in this process with the events API Gateway (HTTP API,
 * payload 2.0) and EventBridge deliver, against DynamoDB Local: the same code path as in
 * AWS from the event to the table, with the endpoint taken from AWS_ENDPOINT_URL_DYNAMODB.
 */

type Api = typeof import('../functions/task-api.js');
type Health = typeof import('../functions/health.js');

let api: Api;
let health: Health;
let t: TestTable;
let emf: Array<Record<string, unknown>> = [];
let cleanup: Array<() => Promise<unknown>> = [];

const periodMs = 200;

beforeAll(async () => {
  t = await freshTable('functions');
  process.env['AWS_ENDPOINT_URL_DYNAMODB'] = t.endpoint;
  process.env['KEEPER_TABLE'] = t.table;
  process.env['KEEPER_PERIOD_MS'] = String(periodMs);
  process.env['POWERTOOLS_SERVICE_NAME'] = 'functions-test';
  // The health module creates its Powertools instance at load, as it does in Lambda.
  api = await import('../functions/task-api.js');
  health = await import('../functions/health.js');
});

afterAll(async () => {
  await t.drop();
});

beforeEach(() => {
  emf = [];
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    for (const line of String(chunk).split('\n')) if (line.startsWith('{"_aws"')) emf.push(JSON.parse(line) as Record<string, unknown>);
    return true;
  }) as typeof process.stdout.write);
  // 5xx are logged by design; keep the test output readable but countable.
  vi.spyOn(console, 'error').mockImplementation(() => {});
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(console, 'warn').mockImplementation(() => {});
  process.env['KEEPER_TABLE'] = t.table;
});

afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
  vi.restoreAllMocks();
});

// ---------------------------------------------------------------- events

const context: Context = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: 'keeper-test',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:keeper-test',
  memoryLimitInMB: '256',
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
  logGroupName: '/aws/lambda/keeper-test',
  logStreamName: '2025/11/26/[$LATEST]abcdef',
  getRemainingTimeInMillis: () => 10_000,
  done: () => {},
  fail: () => {},
  succeed: () => {},
};

interface Request {
  routeKey: string;
  path: string;
  id?: string;
  query?: Record<string, string>;
  body?: string;
  contentType?: string | null;
}

/** An HTTP API (payload format 2.0) event as API Gateway sends it after IAM authorization. */
function apiEvent(r: Request): APIGatewayProxyEventV2 {
  const [method] = r.routeKey.split(' ');
  const rawQueryString = new URLSearchParams(r.query ?? {}).toString();
  const headers: Record<string, string> = { accept: '*/*', host: 'abc123.execute-api.us-east-1.amazonaws.com', 'user-agent': 'awscurl/0.36' };
  if (r.contentType !== null && (r.body !== undefined || r.contentType !== undefined)) headers['content-type'] = r.contentType ?? 'application/json';
  return {
    version: '2.0',
    routeKey: r.routeKey,
    rawPath: r.path,
    rawQueryString,
    headers,
    ...(r.query ? { queryStringParameters: r.query } : {}),
    ...(r.id !== undefined ? { pathParameters: { id: r.id } } : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      authorizer: {
        iam: {
          accessKey: 'ASIAEXAMPLE',
          accountId: '123456789012',
          callerId: 'AROAEXAMPLE:operator',
          cognitoIdentity: null,
          principalOrgId: null,
          userArn: 'arn:aws:sts::123456789012:assumed-role/operator/session',
          userId: 'AROAEXAMPLE:operator',
        },
      },
      domainName: 'abc123.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method: method!, path: r.path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'awscurl/0.36' },
      requestId: randomUUID(),
      routeKey: r.routeKey,
      stage: '$default',
      time: '26/Nov/2025:17:00:00 +0000',
      timeEpoch: Date.now(),
    },
    ...(r.body !== undefined ? { body: r.body } : {}),
    isBase64Encoded: false,
  } as APIGatewayProxyEventV2;
}

interface Answer {
  status: number;
  contentType: string | undefined;
  body: Record<string, unknown>;
}

async function call(handler: (event: APIGatewayProxyEventV2, context: Context) => Promise<unknown>, request: Request): Promise<Answer> {
  const result = (await handler(apiEvent(request), context)) as APIGatewayProxyStructuredResultV2;
  const headers = Object.fromEntries(Object.entries(result.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return { status: result.statusCode ?? 0, contentType: headers['content-type'], body: JSON.parse(result.body ?? 'null') as Record<string, unknown> };
}

const post = (body: unknown, contentType?: string | null) =>
  call(api.create, { routeKey: 'POST /tasks', path: '/tasks', body: typeof body === 'string' ? body : JSON.stringify(body), ...(contentType !== undefined ? { contentType } : {}) });
const getOne = (id: string) => call(api.get, { routeKey: 'GET /tasks/{id+}', path: `/tasks/${id}`, id });
const listPage = (query?: Record<string, string>) => call(api.list, { routeKey: 'GET /tasks', path: '/tasks', ...(query ? { query } : {}) });
const del = (id: string) => call(api.remove, { routeKey: 'DELETE /tasks/{id+}', path: `/tasks/${id}`, id });
const patch = (id: string, body: unknown, contentType?: string | null) =>
  call(api.update, { routeKey: 'PATCH /tasks/{id+}', path: `/tasks/${id}`, id, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}), ...(contentType !== undefined ? { contentType } : {}) });
const releaseCall = (path: string) => call(api.release, { routeKey: 'POST /tasks/{id+}', path: `/tasks/${path}`, id: path });

const uid = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Every task in the table, read past the API. */
async function allTasks() {
  return (await new TaskAdmin(t.store()).status()).tasks;
}

function expectProblem(answer: Answer, status: number, error: string, message: RegExp | string): void {
  expect(answer.status).toBe(status);
  expect(answer.contentType).toBe('application/json');
  expect(answer.body['error']).toBe(error);
  expect(answer.body['message']).toMatch(message);
}

// ---------------------------------------------------------------- task API

describe('task API: create', () => {
  it('creates a task, answers 201 with it, and 200 with the same task when asked again (idempotent on id)', async () => {
    const id = uid('create');
    const first = await post({ id, type: 'demo', payload: { n: 1 } });
    expect(first.status).toBe(201);
    expect(first.contentType).toBe('application/json');
    expect(first.body).toMatchObject({ created: true, task: { id, type: 'demo', payload: { n: 1 }, owner: null, state: 'ready', token: 0 } });
    const again = await post({ id, type: 'demo', payload: { n: 1 } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: false, task: { id, createdAt: (first.body['task'] as { createdAt: string }).createdAt } });
    expect((await allTasks()).filter((task) => task.id === id)).toHaveLength(1);
  });

  it('answers 409 to a different task under an existing id, and leaves the stored one as it was', async () => {
    const id = uid('conflict');
    await post({ id, payload: 'first' });
    const answer = await post({ id, payload: 'second' });
    expectProblem(answer, 409, 'TaskConflict', `task "${id}" already exists with a different type or payload`);
    expect((await getOne(id)).body).toMatchObject({ id, payload: 'first' });
  });

  it.each([
    ['invalid JSON', '{"id": "x",', 'the body is not valid JSON'],
    ['an empty body', '', 'the body is not valid JSON'],
  ])('answers 400 to %s and writes nothing', async (_what, body, message) => {
    const before = (await allTasks()).length;
    expectProblem(await post(body), 400, 'InvalidJson', message);
    expect((await allTasks()).length).toBe(before);
  });

  it('answers 400 to a request that declares JSON but has no body', async () => {
    const answer = await call(api.create, { routeKey: 'POST /tasks', path: '/tasks', contentType: 'application/json' });
    expectProblem(answer, 400, 'InvalidJson', 'the body is missing: send a JSON object');
  });

  it('answers 415 to a body that is not declared as JSON', async () => {
    expectProblem(await post({ id: uid('media') }, 'text/plain'), 415, 'UnsupportedMediaType', 'Content-Type: application/json');
  });

  it.each([
    ['a missing id', { type: 'demo' }, 'id must be a string'],
    ['an id that is not a string', { id: 42 }, 'id must be a string'],
    ['a type that is not a string', { id: 'typed', type: 7 }, 'type must be a string'],
    ['an id with a forbidden character', { id: 'a b' }, 'id may contain only letters, digits and . _ : / @ + = -'],
    ['an unknown field', { id: 'extra', owner: 'me' }, 'unknown field "owner"'],
    ['a body that is not an object', ['a list'], /expected object/],
    ['an id over the length limit', { id: 'x'.repeat(limits.taskIdLength + 1) }, `id must be at most ${limits.taskIdLength} characters`],
  ])('answers 400 naming the problem for %s, and writes nothing', async (_what, body, message) => {
    const before = (await allTasks()).length;
    expectProblem(await post(body), 400, 'InvalidInput', message);
    expect((await allTasks()).length).toBe(before);
  });

  it.each([
    ['a priority that is not whole', 1.5],
    ['a priority given as text', '5'],
    ['a priority out of range', 1_000_001],
    ['a priority that is null', null],
  ])('answers 400 to %s, and writes nothing', async (_what, priority) => {
    const id = uid('prio');
    expectProblem(await post({ id, priority }), 400, 'InvalidInput', 'priority must be a whole number from -1000000 to 1000000');
    expect((await getOne(id)).status).toBe(404);
  });

  it('creates a task with a priority and shows it; a task without one shows priority 0; another priority under the same id is a conflict', async () => {
    const id = uid('urgent');
    const created = await post({ id, priority: -3 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ created: true, task: { id, priority: -3 } });
    expect((await getOne(id)).body).toMatchObject({ id, priority: -3 });
    expectProblem(await post({ id, priority: 4 }), 409, 'TaskConflict', `task "${id}" already exists with priority -3`);
    const plain = uid('plain');
    await post({ id: plain });
    expect((await getOne(plain)).body).toMatchObject({ id: plain, priority: 0 });
  });

  it.each([
    ['a weight of 0', 0],
    ['a negative weight', -2],
    ['a weight that is not whole', 2.5],
    ['a weight given as text', '3'],
    ['a weight that is null', null],
    ['a weight over the limit', 1_000_001],
  ])('answers 400 to %s, and writes nothing', async (_what, weight) => {
    const id = uid('heavy');
    expectProblem(await post({ id, weight }), 400, 'InvalidInput', 'weight must be a whole number from 1 to 1000000');
    expect((await getOne(id)).status).toBe(404);
  });

  it('creates a task with a weight and shows it; a task without one shows weight 1; another weight under the same id is a conflict', async () => {
    const id = uid('weighty');
    const created = await post({ id, weight: 4 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ created: true, task: { id, weight: 4 } });
    expect((await getOne(id)).body).toMatchObject({ id, weight: 4 });
    expectProblem(await post({ id, weight: 2 }), 409, 'TaskConflict', `task "${id}" already exists with weight 4`);
    const plain = uid('plain');
    await post({ id: plain });
    expect((await getOne(plain)).body).toMatchObject({ id: plain, weight: 1 });
  });

  it.each([
    ['a selector given as text', { require: 'zone=a' }, 'require: labels must be an object'],
    ['a label value that is empty', { require: { zone: '' } }, 'a label value is 1-128 letters'],
    ['a label key with a space', { prefer: { 'disk type': 'ssd' } }, 'a label key is 1-63 letters'],
    ['a label value that is a number', { prefer: { zone: 1 } }, 'a label value is 1-128 letters'],
  ])('answers 400 to %s, and writes nothing', async (_what, selector, message) => {
    const id = uid('sel');
    const answer = await post({ id, ...selector });
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: 'InvalidInput', message: expect.stringContaining(message) });
    expect((await getOne(id)).status).toBe(404);
  });

  it('creates a task that requires and prefers labels and shows them', async () => {
    const id = uid('zoned');
    const created = await post({ id, require: { zone: 'eu-west-1a' }, prefer: { disk: 'ssd' } });
    expect(created.status).toBe(201);
    expect((await getOne(id)).body).toMatchObject({ id, require: { zone: 'eu-west-1a' }, prefer: { disk: 'ssd' } });
  });

  it('answers 413 to a payload over the budget, and writes nothing', async () => {
    const id = uid('big');
    const answer = await post({ id, payload: 'x'.repeat(limits.payloadBytes) });
    expectProblem(answer, 413, 'PayloadTooLarge', `the limit is ${limits.payloadBytes} bytes`);
    expect((await getOne(id)).status).toBe(404);
  });

  it('accepts a payload exactly at the budget', async () => {
    const id = uid('edge');
    const payload = 'x'.repeat(limits.payloadBytes - 2); // the JSON string adds two quotes
    expect((await post({ id, payload })).status).toBe(201);
  });
});

describe('task API: get, list, delete', () => {
  it('gets a task by id, including ids with "/" through the greedy path parameter and URL-encoded ones', async () => {
    const id = `reports/${uid('daily')}@eu`;
    await post({ id, payload: [1, 2] });
    expect((await getOne(id)).body).toMatchObject({ id, payload: [1, 2], state: 'ready' });
    const encoded = await getOne(encodeURIComponent(id));
    expect(encoded.status).toBe(200);
    expect(encoded.body['id']).toBe(id);
  });

  it("shows a task's checkpoint, as its owner last stored it", async () => {
    const id = uid('poll');
    await post({ id, payload: null });
    const store = t.store();
    await store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'n1', ownerInc: 1 });
    await store.updateTask(id, { owner: 'n1', ownerInc: 1, token: 1 }, { checkpoint: '{"cursor":42}' });
    expect((await getOne(id)).body).toMatchObject({ id, owner: 'n1', token: 1, checkpoint: { cursor: 42 } });
  });

  it('answers 404 to an unknown id and 400 to an id over the length limit', async () => {
    expectProblem(await getOne('no-such-task'), 404, 'TaskNotFound', 'task "no-such-task" does not exist');
    expectProblem(await getOne('y'.repeat(limits.taskIdLength + 1)), 400, 'InvalidInput', `at most ${limits.taskIdLength} characters`);
    expectProblem(await getOne('%E0%A4%A'), 400, 'InvalidInput', 'not valid URL encoding');
  });

  it('lists every task exactly once across pages, following the cursor', async () => {
    const local = await freshTable('functions-list');
    cleanup.push(() => local.drop());
    process.env['KEEPER_TABLE'] = local.table;
    const ids = Array.from({ length: 7 }, (_, i) => `page-${i}`);
    for (const id of ids) expect((await post({ id })).status).toBe(201);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const answer = await listPage({ limit: '3', ...(cursor ? { cursor } : {}) });
      expect(answer.status).toBe(200);
      const items = answer.body['items'] as Array<{ id: string }>;
      expect(items.length).toBeLessThanOrEqual(3);
      seen.push(...items.map((item) => item.id));
      cursor = answer.body['cursor'] as string | undefined;
      pages++;
    } while (cursor && pages < 10);
    expect(seen.sort()).toEqual(ids);
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it.each([
    [{ limit: '0' }, 'limit must be a whole number from 1 to 1000'],
    [{ limit: '1001' }, 'limit must be a whole number from 1 to 1000'],
    [{ limit: 'ten' }, 'limit must be a whole number from 1 to 1000'],
    [{ limit: '2.5' }, 'limit must be a whole number from 1 to 1000'],
    [{ page: '2' }, 'unknown query parameter "page"; use limit and cursor'],
  ])('answers 400 to the query %j', async (query, message) => {
    expectProblem(await listPage(query), 400, 'InvalidInput', message);
  });

  it.each([
    ['not base64 of JSON', '!!!'],
    ['JSON without a key', Buffer.from('{"a":1}').toString('base64url')],
    ['a key of the wrong shape', Buffer.from(JSON.stringify({ pk: 'task#x' })).toString('base64url')],
    ['a key with a wrongly typed part', Buffer.from(JSON.stringify({ pk: 'task#x', sk: 5 })).toString('base64url')],
  ])('answers 400 to a cursor that is %s', async (_what, cursor) => {
    expectProblem(await listPage({ cursor }), 400, 'InvalidCursor', 'cursor is not one this API returned');
  });

  it('deletes a task once: 200 with the deleted task, then 404', async () => {
    const id = uid('gone');
    await post({ id });
    const answer = await del(id);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ deleted: { id } });
    expect((await getOne(id)).status).toBe(404);
    expectProblem(await del(id), 404, 'TaskNotFound', `task "${id}" does not exist`);
    expectProblem(await del(''), 400, 'InvalidInput', 'id must not be empty');
  });
});

describe('task API: force-release', () => {
  it('releases an unowned task at once (200), asks a live owner to stop (202), and refuses a finished task (409)', async () => {
    const ledger = new Ledger();
    const worker = makeWorker({ id: uid('owner'), store: t.store() }, ledger).handle('once', () => 'done', { mode: 'finite' });
    cleanup.push(() => worker.kill());

    const idle = uid('idle');
    await post({ id: idle, type: 'nobody-runs-this' });
    const unowned = await releaseCall(`${idle}/release`);
    expect(unowned.status).toBe(200);
    expect(unowned.body).toMatchObject({ pending: false, task: { id: idle, owner: null } });

    await worker.start();
    const running = uid('running');
    await post({ id: running });
    await waitFor('the worker to run the task', () => worker.runningTasks().includes(running));
    const tokenBefore = ((await getOne(running)).body['token'] as number) ?? 0;
    const asked = await releaseCall(`${running}/release`);
    expect(asked.status).toBe(202);
    expect(asked.body).toMatchObject({ pending: true, task: { id: running, releaseRequested: true } });
    // The owner stops it and puts it back: the fencing token moves on.
    await waitFor('the owner to let go', async () => ((await getOne(running)).body['token'] as number) > tokenBefore);

    const finished = uid('finished');
    await post({ id: finished, type: 'once' });
    await waitFor('the finite task to finish', async () => (await getOne(finished)).body['state'] === 'done');
    expectProblem(await releaseCall(`${finished}/release`), 409, 'TaskConflict', `task "${finished}" is done; only ready tasks can be released`);
    ledger.expectSafe();
  });

  it('answers 404 to an unknown task and to a POST on a task path that is not /release', async () => {
    expectProblem(await releaseCall('nothing-here/release'), 404, 'TaskNotFound', 'task "nothing-here" does not exist');
    expectProblem(await releaseCall('some-task'), 404, 'NotFound', 'POST /tasks/{id}/release');
    expectProblem(await releaseCall('release'), 404, 'NotFound', 'POST /tasks/{id}/release');
  });
});

describe('task API: payload update', () => {
  it("gives a running task a new payload (200): its owner restarts it with the payload under the next token; ifToken is compare-and-set; the same payload again changes nothing", async () => {
    const runs: Array<{ token: number; payload: unknown }> = [];
    // The settings of the file's other workers (makeWorker's), whose items may still look alive in this table.
    const worker = new Worker({ doorbellHost: '127.0.0.1', ...fastSettings, nodeId: uid('owner'), store: t.store() }).handle('mail', (ctx) => {
      runs.push({ token: ctx.token, payload: ctx.task.payload });
      return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    });
    cleanup.push(() => worker.kill());
    await worker.start();
    const id = `mail/${uid('box')}`; // a "/" in the id: the greedy path parameter
    await post({ id, type: 'mail', payload: { box: 'ops' } });
    await waitFor('the worker to run the task', () => runs.length === 1);
    const token = runs[0]!.token;

    expectProblem(await patch(id, { payload: { box: 'dev' }, ifToken: token + 5 }), 409, 'TaskConflict', `task "${id}" has token ${token}, not ${token + 5}: it changed since you read it; read it again and retry`);
    const answer = await patch(id, { payload: { box: 'dev' }, ifToken: token });
    expect(answer.status).toBe(200);
    expect(answer.contentType).toBe('application/json');
    expect(answer.body).toMatchObject({ updated: true, task: { id, owner: worker.id, token: token + 1, payload: { box: 'dev' }, state: 'ready' } });
    await waitFor('the owner to restart it with the new payload', () => runs.length === 2);
    expect(runs[1]).toEqual({ token: token + 1, payload: { box: 'dev' } });
    const again = await patch(id, { payload: { box: 'dev' } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ updated: false, task: { token: token + 1 } });
    expect((await getOne(id)).body).toMatchObject({ owner: worker.id, token: token + 1, payload: { box: 'dev' } });
  });

  it('answers bad input with a JSON problem and writes nothing: 400, 413, 415, 404, 409 for a finished task', async () => {
    const id = uid('kept');
    await post({ id, payload: { v: 1 } });
    const finished = uid('finished');
    await post({ id: finished });
    const store = t.store();
    await store.moveTask(finished, { owner: null, ownerInc: 0, token: 0 }, { owner: 'gone', ownerInc: 1 });
    await store.updateTask(finished, { owner: 'gone', ownerInc: 1, token: 1 }, { state: 'failed', error: 'boom' });
    const before = await store.getTasks([id, finished]);
    const cases: Array<[string, () => Promise<Answer>, number, string, RegExp | string]> = [
      ['no body', () => patch(id, undefined, 'application/json'), 400, 'InvalidJson', 'the body is missing: send a JSON object'],
      ['invalid JSON', () => patch(id, '{"payload": '), 400, 'InvalidJson', 'the body is not valid JSON'],
      ['not declared as JSON', () => patch(id, { payload: 2 }, 'text/plain'), 415, 'UnsupportedMediaType', 'Content-Type: application/json'],
      ['no payload', () => patch(id, { ifToken: 0 }), 400, 'InvalidInput', 'payload is required: the new payload, as JSON'],
      ['a negative ifToken', () => patch(id, { payload: 2, ifToken: -1 }), 400, 'InvalidInput', 'ifToken must be a whole number >= 0 (the token you read)'],
      ['an ifToken that is a string', () => patch(id, { payload: 2, ifToken: '0' }), 400, 'InvalidInput', 'ifToken must be a whole number >= 0 (the token you read)'],
      ['an unknown field', () => patch(id, { payload: 2, owner: 'me' }), 400, 'InvalidInput', 'unknown field "owner"'],
      ['a body that is not an object', () => patch(id, [2]), 400, 'InvalidInput', /expected object/],
      ['a payload over the budget', () => patch(id, { payload: 'x'.repeat(limits.payloadBytes) }), 413, 'PayloadTooLarge', `the limit is ${limits.payloadBytes} bytes`],
      ['an unknown task', () => patch('no-such-task', { payload: 2 }), 404, 'TaskNotFound', 'task "no-such-task" does not exist'],
      ['a failed task', () => patch(finished, { payload: 2 }), 409, 'TaskConflict', `task "${finished}" is failed; only ready tasks can be updated (remove it and add it again to run it afresh with this payload)`],
    ];
    for (const [what, request, status, error, message] of cases) {
      const answer = await request();
      expect({ what, status: answer.status, type: answer.contentType, error: answer.body['error'] }).toEqual({ what, status, type: 'application/json', error });
      expect(answer.body['message']).toMatch(message);
    }
    expect(await store.getTasks([id, finished, 'no-such-task'])).toEqual(before);
    expect(console.error).not.toHaveBeenCalled();
  });
});

describe('task API: drain', () => {
  const drainCall = (id: string, action: 'drain' | 'undrain') => call(api.drain, { routeKey: `POST /nodes/{id}/${action}`, path: `/nodes/${id}/${action}`, id });

  it('drains a live worker, which then hands its tasks over, and ends the drain (200 with the node)', async () => {
    const ledger = new Ledger();
    const [a, b] = [uid('a'), uid('b')].map((id) => makeWorker({ id, store: t.store() }, ledger)) as [Worker, Worker];
    cleanup.push(() => a.kill(), () => b.kill());
    await a.start();
    const task = uid('drained');
    await post({ id: task });
    await waitFor('a to run the task', () => a.runningTasks().includes(task));
    await b.start();
    const drained = await drainCall(a.id, 'drain');
    expect(drained.status).toBe(200);
    expect(drained.body).toMatchObject({ node: { id: a.id, state: 'alive', draining: true } });
    await waitFor('b to run the task', () => b.runningTasks().includes(task) && a.runningTasks().length === 0);
    const lifted = await drainCall(a.id, 'undrain');
    expect(lifted.status).toBe(200);
    expect(lifted.body['node']).not.toHaveProperty('draining');
    expect((await drainCall(a.id, 'undrain')).status).toBe(200); // idempotent
    ledger.expectSafe();
  });

  it('answers 404 to an unknown node, 409 to a dead or departed one, 400 to a malformed id, writing nothing', async () => {
    const store = t.store();
    expectProblem(await drainCall('nobody-here', 'drain'), 404, 'NodeNotFound', 'node "nobody-here" does not exist');
    expect(await store.getNode('nobody-here')).toBeUndefined();
    const gone = uid('gone');
    await store.joinNode({ id: gone, inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 1, types: [], watch: {}, joinedAt: 'j' }, undefined);
    await store.markLeft(gone, 1);
    expectProblem(await drainCall(gone, 'drain'), 409, 'NodeConflict', `node "${gone}" has left; only a live node can be drained`);
    expect((await store.getNode(gone))?.draining).toBeUndefined();
    expectProblem(await drainCall('no/such', 'drain'), 400, 'InvalidInput', /node id must be/);
  });
});

describe('task API: failures that are not the caller’s', () => {
  it('answers a missing table with a generic 500 in JSON, and logs it', async () => {
    process.env['KEEPER_TABLE'] = 'no-such-table';
    const answer = await getOne('anything');
    expectProblem(answer, 500, 'InternalError', 'see the function log');
    expect(console.error).toHaveBeenCalledTimes(1);
  });

  it('logs nothing as an error for a caller’s mistake', async () => {
    await getOne('missing-task');
    await post('{');
    expect(console.error).not.toHaveBeenCalled();
  });
});

describe('task operations as plain functions', () => {
  it('create returns the status and body without any HTTP machinery', async () => {
    const admin = new TaskAdmin(t.store());
    const id = uid('plain');
    expect(await api.createTask(admin, { id })).toMatchObject({ statusCode: 201, body: { created: true, task: { id } } });
    expect(await api.createTask(admin, { id })).toMatchObject({ statusCode: 200, body: { created: false } });
  });

  it('leaves refusals to TaskAdmin, whose errors carry their status', async () => {
    const admin = new TaskAdmin(t.store());
    await expect(api.getTask(admin, 'missing')).rejects.toBeInstanceOf(TaskNotFoundError);
    await expect(api.createTask(admin, { id: '' })).rejects.toBeInstanceOf(InvalidInputError);
  });
});

// ---------------------------------------------------------------- health

const scheduledEvent = (): ScheduledEvent => ({
  version: '0',
  id: randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: new Date().toISOString(),
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/keeper-health'],
  detail: {},
});

type HealthFigures = Awaited<ReturnType<Health['checkHealth']>>;

async function runHealth(): Promise<HealthFigures> {
  return (await health.handler(scheduledEvent(), context)) as HealthFigures;
}

/** The value of one metric in the EMF line the health function printed. */
function published(name: string): number | undefined {
  const line = emf.find((l) => (l['_aws'] as { CloudWatchMetrics: Array<{ Metrics: Array<{ Name: string }> }> }).CloudWatchMetrics[0]!.Metrics.some((m) => m.Name === name));
  return line?.[name] as number | undefined;
}

describe('health function', () => {
  async function cluster(size: number) {
    const local = await freshTable('health');
    cleanup.push(() => local.drop());
    process.env['KEEPER_TABLE'] = local.table;
    const ledger = new Ledger();
    const workers: Worker[] = [];
    for (let i = 0; i < size; i++) {
      const worker = makeWorker({ id: `w${i}`, store: local.store() }, ledger, { periodMs });
      cleanup.push(() => worker.kill());
      workers.push(worker);
      await worker.start();
    }
    return { local, workers, ledger };
  }

  it('publishes live nodes and no orphans for a healthy cluster, as EMF in the Keeper namespace', async () => {
    const { local, workers } = await cluster(2);
    const admin = new TaskAdmin(local.store());
    for (let i = 0; i < 4; i++) await admin.add({ id: `job-${i}` });
    await waitFor('all tasks to run', () => workers.reduce((n, w) => n + w.runningTasks().length, 0) === 4);
    // Created just before the check: waiting for a claim is not being orphaned.
    await admin.add({ id: 'fresh' });

    const figures = await runHealth();
    expect(figures).toMatchObject({ liveNodes: 2, staleNodes: 0, orphanedTasks: 0, oldestOrphanedTaskAgeSeconds: 0, readyTasks: 5, failedTasks: 0 });
    expect(published('LiveNodes')).toBe(2);
    expect(published('OrphanedTasks')).toBe(0);
    const line = emf.find((l) => 'LiveNodes' in l)!;
    expect(line['service']).toBe('functions-test');
    expect(line['_aws']).toMatchObject({ CloudWatchMetrics: [{ Namespace: 'Keeper', Dimensions: [['service']] }] });
  });

  it('reports every worker dead: no live node, stale nodes, and their tasks orphaned with their age', async () => {
    const { local, workers } = await cluster(2);
    const anHourAgo = () => new Date(Date.now() - 3_600_000);
    const admin = new TaskAdmin(local.store(), anHourAgo);
    for (let i = 0; i < 3; i++) await admin.add({ id: `old-${i}` });
    await waitFor('all tasks to run', () => workers.reduce((n, w) => n + w.runningTasks().length, 0) === 3);
    // Both crash at once: no peer is left to declare anyone dead, so the items still say alive.
    for (const worker of workers) await worker.kill();

    const figures = await runHealth();
    expect(figures).toMatchObject({ liveNodes: 0, staleNodes: 2, orphanedTasks: 3 });
    expect(figures.oldestOrphanedTaskAgeSeconds).toBeGreaterThanOrEqual(3600);
    expect(figures.oldestOrphanedTaskAgeSeconds).toBeLessThan(3700);
    // It waited the failover bound (with the index lag it allows for) before calling them
    // dead, no longer than a second past it.
    const bound = healthWindowMs(resolveConfig({ periodMs }));
    expect(bound).toBeCloseTo(40 + 7 * periodMs * 1.05 + 6 * periodMs * 1.05); // 1 s of lag: the look 6 periods later
    expect(figures.watchedMs).toBeGreaterThanOrEqual(bound - 5);
    expect(figures.watchedMs).toBeLessThan(bound + 1000);
    expect(published('LiveNodes')).toBe(0);
    expect(published('StaleNodes')).toBe(2);
    expect(published('OrphanedTasks')).toBe(3);
    expect(published('OldestOrphanedTaskAge')).toBe(figures.oldestOrphanedTaskAgeSeconds);
  });

  it('does not count the tasks of a crashed node that its peers take over within the window', async () => {
    const { local, workers, ledger } = await cluster(3);
    const admin = new TaskAdmin(local.store());
    for (let i = 0; i < 6; i++) await admin.add({ id: `job-${i}` });
    await waitFor('every node to run a task', () => workers.every((w) => w.runningTasks().length > 0));
    await workers[0]!.kill();

    const figures = await runHealth();
    expect(figures.orphanedTasks).toBe(0);
    expect(figures.liveNodes).toBe(2);
    ledger.expectSafe();
  });

  it('counts a task that nobody can run (no handler for its type) as orphaned', async () => {
    const { local } = await cluster(1);
    await new TaskAdmin(local.store()).add({ id: 'unknown-type', type: 'nobody-runs-this' });
    const figures = await runHealth();
    expect(figures).toMatchObject({ liveNodes: 1, orphanedTasks: 1 });
  });

  it('counts a task heavier than every live node\'s capacity as unplaceable, and as orphaned once it has waited the window', async () => {
    const { local } = await cluster(1); // capacity 1000
    await new TaskAdmin(local.store()).add({ id: 'too-heavy', weight: 1001 });
    const figures = await runHealth();
    expect(figures).toMatchObject({ liveNodes: 1, orphanedTasks: 1, unplaceableTasks: 1 });
    expect(published('UnplaceableTasks')).toBe(1);
  });

  it('checks the settings it is given the way workers do, and fails loudly on a bad one', async () => {
    process.env['KEEPER_PERIOD_MS'] = 'soon';
    try {
      await expect(runHealth()).rejects.toThrow('KEEPER_PERIOD_MS must be a number, got "soon"');
    } finally {
      process.env['KEEPER_PERIOD_MS'] = String(periodMs);
    }
    expect(resolveConfig({ periodMs }).periodMs).toBe(periodMs);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { createDynamoClient, createNodeClients, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { keys } from '../lib/store/items.js';
import { StoreUnavailableError, type NodeItem } from '../lib/store/store.js';
import type { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';

/**
 * What Amazon DynamoDB does and DynamoDB Local never does (test/support/cloud-model.ts),
 * modelled by the fault proxy in front of a real DynamoDB Local: the store and the node must
 * survive each.
 */
let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
});

async function setup(seed = 1): Promise<{ t: TestTable; proxy: FaultProxy }> {
  const t = await freshTable('cloud');
  cleanup.push(() => t.drop());
  let state = seed;
  // A small seeded generator, so a failing run can be replayed.
  const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const proxy = new FaultProxy(t.endpoint, random);
  await proxy.start();
  cleanup.push(() => proxy.close());
  return { t, proxy };
}

function storeVia(proxy: FaultProxy, t: TestTable, requestTimeoutMs = 1000, attempts = 3): DynamoStore {
  const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs });
  cleanup.push(async () => client.destroy());
  return new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs, retry: { attempts, baseMs: 5, capMs: 20 } });
}

const node = (id: string, counter = 1): NodeItem => ({
  id,
  inc: 1,
  counter,
  state: 'alive',
  inbox: 0,
  neighbours: 0,
  taskCount: 0,
  capacity: 10,
  types: ['demo'],
  watch: {},
  joinedAt: 'j',
});

describe('BatchGetItem leaving keys unprocessed', () => {
  it('asks again for the keys left unprocessed and says which request read each node', async () => {
    const { t, proxy } = await setup();
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const id of ids) await t.store().joinNode(node(id), undefined);
    const model = proxy.cloud({ unprocessedShare: 0.5 });
    const read = await storeVia(proxy, t, 1000, 10).readNodes(ids);
    expect([...read.nodes.keys()].sort()).toEqual(ids);
    expect(read.unread.size).toBe(0);
    expect(read.cluster).toEqual({ tasks: 0 });
    expect(model.stats.unprocessedKeys).toBeGreaterThan(0);
    // Every node held back at least once was read by a later request.
    expect(Math.max(...read.rounds.values())).toBeGreaterThan(1);
  });

  it('reports a key that stays unprocessed as unread, not absent, and keeps the rest of the read', async () => {
    const { t, proxy } = await setup();
    for (const id of ['a', 'b', 'c']) await t.store().joinNode(node(id), undefined);
    proxy.cloud({ hotKeys: (pk) => pk === keys.node('b').pk || pk === keys.cluster.pk });
    const store = storeVia(proxy, t);
    const read = await store.readNodes(['a', 'b', 'c', 'gone']);
    expect([...read.nodes.keys()].sort()).toEqual(['a', 'c']);
    expect([...read.unread]).toEqual(['b']);
    // The cluster item was not read: undefined, never a made-up value.
    expect(read.cluster).toBeUndefined();
    // Task reads need every item: a task left unread is an error there.
    await t.store().createTask({ id: 'job', type: 'demo', payload: null }, 'now');
    proxy.cloud({ hotKeys: (pk) => pk === keys.task('job').pk });
    await expect(store.getTasks(['job'])).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('a hot cluster item that no read ever gets does not blind the detector: a crashed node is still declared dead', async () => {
    const { t, proxy } = await setup();
    const ledger = new Ledger();
    const settings = { periodMs: 250 };
    const ids = ['a', 'b', 'c'];
    const workers = new Map<string, Worker>(ids.map((id) => [id, makeWorker({ id, store: storeVia(proxy, t, 50) }, ledger, settings)]));
    cleanup.push(() => Promise.all([...workers.values()].map((w) => w.kill())));
    const declared: string[] = [];
    for (const w of workers.values()) w.on('declared-dead', ({ node: dead }) => declared.push(dead));
    for (const w of workers.values()) await w.start();
    await waitFor('everyone watching', () => [...workers.values()].every((w) => w.snapshot().watched.length === 2), 10_000);
    // Every node's read of its peers now leaves the cluster item unprocessed, as a hot
    // partition under throttling would.
    proxy.cloud({ hotKeys: (pk) => pk === keys.cluster.pk });
    await workers.get('c')!.kill();
    await waitFor('c declared dead', () => declared.includes('c'), 15_000);
  });
});

describe('outcome writes that fail transiently', () => {
  it.each([
    ['refused by 5xx answers (not applied)', ['error500', 'error500', 'error500'] as const],
    ['applied, its reply lost, then its retries refused (outcome unknown)', ['drop-reply', 'error500', 'error500'] as const],
  ])('a finite task whose outcome write is %s runs once and ends done', async (_what, faults) => {
    const { t, proxy } = await setup();
    await t.store().createTask({ id: 'sum', type: 'add', payload: { a: 2, b: 3 } }, 'now');
    await t.store().bumpCluster('tasks');
    // Every attempt of the first outcome write fails: the store gives up with an error.
    for (const fault of faults) proxy.inject(fault, 'UpdateItem', (body) => body.includes('"done"'));
    let runs = 0;
    // A reconcile every period: a task the node forgot while the table says it is its own would run again at once.
    const worker = makeWorker({ id: 'w', store: storeVia(proxy, t, 200), options: { resyncTicks: 1 } }, new Ledger(), { periodMs: 250 });
    worker.handle<{ a: number; b: number }>('add', async (ctx) => ((runs += 1), { sum: ctx.task.payload.a + ctx.task.payload.b }), { mode: 'finite' });
    cleanup.push(() => worker.kill());
    const outcomes: string[] = [];
    worker.on('task-ended', ({ outcome }) => outcomes.push(outcome));
    await worker.start();
    await waitFor('the run ended', () => outcomes.length > 0, 10_000);
    expect(outcomes).toEqual(['done']);
    expect(proxy.stats).toMatchObject({ errors500: faults.filter((f) => f === 'error500').length, droppedReplies: faults.filter((f) => f === 'drop-reply').length });
    // Long enough for several reconciles.
    await new Promise((resolve) => setTimeout(resolve, 6 * 250));
    expect(runs).toBe(1);
    expect(await t.store().getTask('sum')).toMatchObject({ state: 'done', result: { sum: 5 } });
  });
});

describe('transactions in progress', () => {
  it('a transaction whose reply was lost is sent again with its client token and lands once; single writes meanwhile are refused', async () => {
    const { t, proxy } = await setup();
    const ids = ['t1', 't2', 't3'];
    for (const id of ids) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    const model = proxy.cloud({ transactionInProgressMs: 150 });
    proxy.inject('drop-reply', 'TransactWriteItems');
    // Retries that outlast the time the lost transaction stays in progress.
    const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs: 1000 });
    cleanup.push(async () => client.destroy());
    const store = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs: 1000, retry: { attempts: 8, baseMs: 50, capMs: 200 } });
    const moving = store.moveTasks(ids.map((id) => ({ id, from: { owner: null, ownerInc: 0, token: 0 } })), { owner: 'b', ownerInc: 1 }).catch((error: unknown) => error);
    // While it is in progress, a single move of one of its tasks is refused (and retried).
    await waitFor('the lost transaction in progress', () => proxy.stats.droppedReplies === 1, 5_000, 1);
    const single = await store.moveTask('t1', { owner: null, ownerInc: 0, token: 0 }, { owner: 'c', ownerInc: 1 }).catch((error: unknown) => error);
    expect(await moving).toBe(true);
    expect(model.stats.transactionConflicts).toBeGreaterThan(0);
    for (const id of ids) expect(await t.store().getTask(id)).toMatchObject({ owner: 'b', ownerInc: 1, token: 1 });
    // The single move could not win against the transaction: refused (undefined) or given up.
    expect(single === undefined || single instanceof Error).toBe(true);
  });
});

describe('per-partition throttling', () => {
  it('a transaction cancelled only for throttling goes again whole, instead of being taken as refused', async () => {
    const { t, proxy } = await setup();
    const ids = ['t1', 't2'];
    const model = proxy.cloud({ partitionWriteUnits: 2 });
    const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs: 1000 });
    cleanup.push(async () => client.destroy());
    // Retries with backoff that outlast the second the partition needs to refill, however
    // the jitter falls (full jitter: each pause is anywhere below its ceiling).
    const store = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs: 1000, retry: { attempts: 20, baseMs: 200, capMs: 1000 } });
    // The creates take t1's partition to its limit for this second: the transaction's two
    // units for t1 are throttled until the next.
    for (const id of ids) await store.createTask({ id, type: 'demo', payload: null }, 'now');
    await store.createTask({ id: 't1', type: 'demo', payload: null }, 'again');
    const moved = await store.moveTasks(ids.map((id) => ({ id, from: { owner: null, ownerInc: 0, token: 0 } })), { owner: 'b', ownerInc: 1 });
    expect(model.stats.partitionThrottles).toBeGreaterThan(0);
    expect(moved).toBe(true);
    for (const id of ids) expect(await t.store().getTask(id)).toMatchObject({ owner: 'b', token: 1 });
  });
});

describe('a write-unit budget for moves', () => {
  it('paces a takeover: no node\'s moves spend more than a second\'s budget beyond its rate, and every task still moves', async () => {
    const t = await freshTable('budget');
    cleanup.push(() => t.drop());
    const tasks = Array.from({ length: 48 }, (_, i) => `job-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    const perSecond = 12;
    const spent = new Map<string, Array<{ at: number; units: number }>>();
    // Each node's moves as it sends them: a transaction costs two units per (small) item.
    const recording = (id: string) =>
      new Proxy(t.store({ requestTimeoutMs: 1000 }), {
        get(target, key, receiver) {
          const value = Reflect.get(target, key, receiver) as unknown;
          if (typeof value !== 'function') return value;
          const fn = (value as (...a: unknown[]) => unknown).bind(target);
          if (key !== 'moveTask' && key !== 'moveTasks') return fn;
          return (...args: unknown[]) => {
            const units = key === 'moveTasks' ? 2 * (args[0] as unknown[]).length : 1;
            spent.set(id, [...(spent.get(id) ?? []), { at: performance.now(), units }]);
            return fn(...args);
          };
        },
      });
    const ledger = new Ledger();
    const nodes = ['a', 'b', 'c'].map((id) => makeWorker({ id, store: recording(id), options: { moveWriteUnitsPerSecond: perSecond } }, ledger));
    cleanup.push(() => Promise.all(nodes.map((w) => w.kill())));
    await Promise.all(nodes.map((w) => w.start()));
    await waitFor('every task running once', () => tasks.every((task) => ledger.runners(task).length === 1), 30_000);
    const victim = nodes.reduce((most, w) => (w.runningTasks().length > most.runningTasks().length ? w : most));
    const lost = victim.runningTasks();
    await victim.kill();
    await waitFor('the victim\'s tasks running elsewhere', () => lost.every((task) => ledger.runners(task).length === 1 && ledger.runners(task)[0] !== victim.id), 30_000);
    ledger.expectSafe();
    for (const [id, moves] of spent) {
      let total = 0;
      for (const { at, units } of moves) {
        total += units;
        // What the budget allows by the time this move was sent: a second's worth at once, then
        // its rate (5 ms of slack: Node's timers may fire a millisecond or so early).
        expect(total, `node ${id}`).toBeLessThanOrEqual(perSecond + (perSecond * (at - moves[0]!.at + 5)) / 1000);
      }
    }
    // The takeover did spend more than the burst, so the pacing was put to the test.
    expect(Math.max(...[...spent.values()].map((moves) => moves.reduce((sum, m) => sum + m.units, 0)))).toBeGreaterThan(2 * perSecond);
  }, 60_000);
});

describe('the heartbeat on connections of its own', () => {
  it('lands while every connection of the other client is held up (a takeover\'s burst)', async () => {
    const { t, proxy } = await setup();
    await t.store().joinNode(node('a'), undefined);
    const clients = createNodeClients({ endpoint: proxy.endpoint, requestTimeoutMs: 1000 });
    cleanup.push(async () => clients.destroy());
    const store = new DynamoStore({
      client: documentClient(clients.client),
      heartbeatClient: documentClient(clients.heartbeatClient),
      table: t.table,
      requestTimeoutMs: 1000,
      retry: { attempts: 1 },
    });
    // Reads that the server is slow to answer, more of them than the client has connections.
    proxy.hold = { match: (operation) => operation === 'GetItem', ms: 3000 };
    let settled = 0;
    const reads = Array.from({ length: 60 }, () => store.getTask('slow').catch(() => undefined).finally(() => (settled += 1)));
    await waitFor('every connection of the client held up', () => proxy.stats.held >= 50);
    const beat = await store.heartbeat({ id: 'a', inc: 1, joinedAt: 'j', counter: 2, taskCount: 0, capacity: 10, types: ['demo'], watch: {} });
    expect(beat.ok).toBe(true);
    // It did not wait its turn behind them: none of them is over yet.
    expect(settled).toBe(0);
    await Promise.all(reads);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { failoverBoundMs } from '../lib/config.js';
import { AmbiguousWriteError } from '../lib/store/store.js';
import { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';

/**
 * Network faults between a worker and a real DynamoDB Local, injected by an HTTP proxy:
 * partitions, throttling, 5xx, and writes whose reply is lost.
 */
let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
});

async function table(): Promise<TestTable> {
  const t = await freshTable('faults');
  cleanup.push(() => t.drop());
  return t;
}

async function proxyFor(t: TestTable): Promise<FaultProxy> {
  const proxy = new FaultProxy(t.endpoint);
  await proxy.start();
  cleanup.push(() => proxy.close());
  return proxy;
}

function storeVia(proxy: FaultProxy, t: TestTable, requestTimeoutMs: number, attempts = 3): DynamoStore {
  const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs });
  cleanup.push(async () => client.destroy());
  return new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs, retry: { attempts, baseMs: 5, capMs: 20 } });
}

describe('store under network faults', () => {
  it('a request into a partition times out within the request timeout, not seconds later', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const store = storeVia(proxy, t, 100, 1);
    proxy.partition();
    const started = performance.now();
    await expect(store.getNode('x')).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(600);
  });

  it('retries throttling and 5xx answers with backoff and succeeds', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const store = storeVia(proxy, t, 1000, 4);
    proxy.inject('throttle');
    proxy.inject('error500');
    proxy.inject('throttle');
    expect(await store.createTask({ id: 'a', type: 'demo', payload: null }, 'now')).toBe('created');
    expect(proxy.stats).toMatchObject({ throttled: 2, errors500: 1 });
  });

  it('a claim whose reply was lost is recognised as won on retry, not reported as lost', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const store = storeVia(proxy, t, 1000);
    await t.store().createTask({ id: 'job', type: 'demo', payload: null }, 'now');
    proxy.inject('drop-reply', 'UpdateItem');
    const moved = await store.moveTask('job', { owner: null, ownerInc: 0, token: 0 }, { owner: 'me', ownerInc: 1 });
    expect(proxy.stats.droppedReplies).toBe(1);
    expect(moved).toMatchObject({ owner: 'me', ownerInc: 1, token: 1 });
    expect((await t.store().getTask('job'))?.token).toBe(1);
  });

  it('a declaration of death whose reply was lost is recognised as won on retry', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const store = storeVia(proxy, t, 1000);
    const plain = t.store();
    await plain.joinNode({ id: 'p', inc: 1, counter: 5, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 1, types: [], watch: {}, joinedAt: 'j' }, undefined);
    proxy.inject('drop-reply', 'UpdateItem');
    expect(await store.declareDead('p', { inc: 1, counter: 5 }, 'observer')).toBe(true);
    expect(await plain.getNode('p')).toMatchObject({ state: 'dead', deadBy: 'observer' });
  });

  it('when every attempt is ambiguous the caller is told so, and can re-read', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const store = storeVia(proxy, t, 1000, 2);
    await t.store().createTask({ id: 'job', type: 'demo', payload: null }, 'now');
    proxy.inject('drop-reply', 'UpdateItem');
    proxy.inject('drop-reply', 'UpdateItem');
    await expect(store.moveTask('job', { owner: null, ownerInc: 0, token: 0 }, { owner: 'me', ownerInc: 1 })).rejects.toBeInstanceOf(AmbiguousWriteError);
    expect((await t.store().getTask('job'))?.owner).toBe('me');
  });
});

describe('worker under network faults', () => {
  it('a partitioned node stops its tasks before any peer takes them, and peers take over', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const ledger = new Ledger();
    const cut = makeWorker({ id: 'cut', store: storeVia(proxy, t, 50) }, ledger);
    const others = ['b', 'c'].map((id) => makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }) }, ledger));
    const all = [cut, ...others];
    cleanup.push(() => Promise.all(all.map((w) => w.kill())));
    const tasks = Array.from({ length: 9 }, (_, i) => `task-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    let fencedAt = 0;
    cut.on('fenced', () => (fencedAt = performance.now()));
    const declaredAt: number[] = [];
    for (const w of others) w.on('declared-dead', () => declaredAt.push(performance.now()));
    await Promise.all(all.map((w) => w.start()));
    // The node behind the slow proxy may lose the first claims; rebalancing then hands it some.
    await waitFor('all tasks running, some on the node to be cut off', () => runningOnce(ledger, tasks) === tasks.length && cut.runningTasks().length > 0);
    const held = cut.runningTasks();
    proxy.partition();
    await waitFor('takeover', () => held.every((task) => ledger.runners(task).length === 1 && ledger.runners(task)[0] !== 'cut'));
    expect(fencedAt).toBeGreaterThan(0);
    expect(declaredAt.length).toBe(1);
    expect(fencedAt).toBeLessThan(declaredAt[0]!);
    // Healed: the node learns it was declared dead, and rejoins as a new incarnation.
    const before = cut.snapshot().inc;
    proxy.heal();
    await waitFor('rejoin', () => cut.snapshot().inc === before + 1 && cut.snapshot().phase === 'running');
    await waitFor('every task once', () => runningOnce(ledger, tasks) === tasks.length);
    ledger.expectSafe();
  });

  it('keeps running through throttling, 5xx and lost replies on a share of requests', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    proxy.rates = { throttle: 0.05, error500: 0.05, dropReply: 0.05 };
    const ledger = new Ledger();
    const workers: Worker[] = ['a', 'b', 'c'].map((id) => makeWorker({ id, store: storeVia(proxy, t, 200) }, ledger));
    cleanup.push(() => Promise.all(workers.map((w) => w.kill())));
    const events: string[] = [];
    for (const w of workers) w.on('declared-dead', ({ node }) => events.push(`${w.id}->${node}`));
    const tasks = Array.from({ length: 12 }, (_, i) => `task-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    await Promise.all(workers.map((w) => w.start()));
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const counter = workers[0]!.snapshot().counter;
    await waitFor('20 more periods', () => workers[0]!.snapshot().counter >= counter + 20);
    expect(proxy.stats.throttled + proxy.stats.errors500 + proxy.stats.droppedReplies).toBeGreaterThan(10);
    expect(events).toEqual([]);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    ledger.expectSafe();
  }, 60_000);
});

describe('regressions found by the fault harness (docs/chaos-findings.md)', () => {
  it('finding 1: a move that times out but lands later never lets two nodes run the task', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    // Every write that hands a task to B is held past A's request timeout, then applied.
    proxy.hold = { match: (operation, body) => operation === 'UpdateItem' && body.includes('":toOwner":{"S":"b"}'), ms: 600 };
    const ledger = new Ledger();
    const tasks = Array.from({ length: 10 }, (_, i) => `task-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    const a = makeWorker({ id: 'a', store: storeVia(proxy, t, 100) }, ledger, { periodMs: 500 });
    cleanup.push(() => a.kill());
    await a.start();
    await waitFor('a runs every task', () => a.runningTasks().length === tasks.length);
    // B looks at its own tasks every 4 periods, so it finds the ones that landed late soon.
    const b = makeWorker({ id: 'b', store: t.store(), options: { resyncTicks: 4 } }, ledger, { periodMs: 500 });
    cleanup.push(() => b.kill());
    await b.start();
    await waitFor('some moves held back and landed late', () => proxy.stats.held >= 3, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    ledger.expectSafe();
    // Nothing lost either: every task runs on exactly one node once things settle.
    await waitFor('every task runs once', () => runningOnce(ledger, tasks) === tasks.length);
  }, 60_000);

  it('finding 3: tasks whose handover timed out during a graceful leave run elsewhere within the failover bound', async () => {
    const t = await table();
    const proxy = await proxyFor(t);
    const ledger = new Ledger();
    const tasks = Array.from({ length: 10 }, (_, i) => `task-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    const leaving = makeWorker({ id: 'leaving', store: storeVia(proxy, t, 100, 1) }, ledger, { periodMs: 500, maxMovesPerTick: 0 });
    cleanup.push(() => leaving.kill());
    await leaving.start();
    await waitFor('leaving runs every task', () => leaving.runningTasks().length === tasks.length);
    const peer = makeWorker({ id: 'peer', store: t.store() }, ledger, { periodMs: 500, maxMovesPerTick: 0 });
    cleanup.push(() => peer.kill());
    await peer.start();
    // Every handover from the leaving node times out and never lands.
    proxy.hold = { match: (operation, body) => operation === 'UpdateItem' && body.includes('":toOwner"'), ms: 60_000 };
    const started = performance.now();
    await leaving.stop();
    await waitFor('peer runs every task', () => tasks.every((task) => ledger.runners(task)[0] === 'peer'), 30_000);
    expect(performance.now() - started).toBeLessThan(failoverBoundMs(peer.config));
    ledger.expectSafe();
  }, 60_000);
});


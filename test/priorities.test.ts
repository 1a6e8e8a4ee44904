import { afterEach, describe, expect, it } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { systemClock } from '../lib/clock.js';
import { failoverBoundMs, type KeeperOptions } from '../lib/config.js';
import { taskSlot } from '../lib/store/items.js';
import type { Worker } from '../lib/worker.js';
import { fastSettings, Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { PausableClock } from './support/pausable-clock.js';

/**
 * Task priorities and the start-rate limit (issue 16, items 3 and 4), with real workers on
 * DynamoDB Local. Priorities are given against the ring order of the task ids (the order
 * the owner index lists them in, and so the order a node meets them), so that placing in
 * that order instead of by priority would pick other tasks.
 */
let tables: TestTable[] = [];
let workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
});

/** Without rebalancing, tasks move only by claims and takeovers: what these tests are about. */
const settings: KeeperOptions = { ...fastSettings, maxMovesPerTick: 0 };

async function table(): Promise<TestTable> {
  const t = await freshTable('priority');
  tables.push(t);
  return t;
}

/** Ids in ring order, each with its rank as priority: the first the index lists is the least urgent. */
function rankedIds(prefix: string, count: number): Array<{ id: string; priority: number }> {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i}`)
    .sort((a, b) => (taskSlot(a) < taskSlot(b) ? -1 : 1))
    .map((id, rank) => ({ id, priority: rank }));
}

async function add(t: TestTable, tasks: Array<{ id: string; priority: number }>): Promise<void> {
  const admin = new TaskAdmin(t.store());
  for (const task of tasks) await admin.add({ ...task, type: 'demo' });
}

function start(t: TestTable, ledger: Ledger, id: string, options: Partial<KeeperOptions> = {}, clock = systemClock): Worker {
  const worker = makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }), clock, options }, ledger, settings);
  workers.push(worker);
  return worker;
}

/** The ids of `tasks`, highest priority first. */
const byPriority = (tasks: Array<{ id: string; priority: number }>) => [...tasks].sort((a, b) => b.priority - a.priority).map((t) => t.id);

describe('priorities against DynamoDB Local', () => {
  it('claims the highest priorities first when the pool holds more than the node has room for', async () => {
    const t = await table();
    const tasks = rankedIds('claim', 8);
    await add(t, tasks);
    const ledger = new Ledger();
    const a = start(t, ledger, 'a', { capacity: 3 });
    await a.start();
    await waitFor('three tasks running', () => runningOnce(ledger, tasks.map((x) => x.id)) === 3);
    // A few periods more: the node is full, so nothing else is claimed or swapped.
    await waitFor('four more beats', async () => ((await t.store().getNode('a'))?.counter ?? 0) >= 6);
    expect(a.runningTasks()).toEqual(byPriority(tasks).slice(0, 3).sort());
    const free = (await t.store().unownedTasks(100)).map((x) => x.id).sort();
    expect(free).toEqual(byPriority(tasks).slice(3).sort());
    ledger.expectSafe();
  });

  it('places a dead node\'s highest priorities on the room left, and puts the rest back in the pool', async () => {
    const t = await table();
    const ledger = new Ledger();
    // The victim holds four tasks of priorities 0-3 ...
    const urgent = rankedIds('victim', 4);
    await add(t, urgent);
    const victim = start(t, ledger, 'victim', { capacity: 4 });
    await victim.start();
    await waitFor('the victim runs its four', () => runningOnce(ledger, urgent.map((x) => x.id)) === 4);
    // ... and two nodes of four places each run six tasks of priority 0: two places are left.
    const filler = Array.from({ length: 6 }, (_, i) => ({ id: `filler-${i}`, priority: 0 }));
    await add(t, filler);
    const peers = [start(t, ledger, 'b', { capacity: 4 }), start(t, ledger, 'c', { capacity: 4 })];
    await Promise.all(peers.map((w) => w.start()));
    await waitFor('the filler running', () => runningOnce(ledger, filler.map((x) => x.id)) === 6);
    const takeover = new Promise((resolve) => peers.forEach((w) => w.once('takeover', resolve)));
    await victim.kill();
    await takeover;
    const [first, second, ...rest] = byPriority(urgent);
    await waitFor('the two most urgent running elsewhere', () => [first!, second!].every((id) => ledger.runners(id).length === 1 && ledger.runners(id)[0] !== 'victim'));
    // The two least urgent wait in the pool: nobody has room for them.
    const free = (await t.store().unownedTasks(100)).map((x) => x.id).sort();
    expect(free).toEqual([...rest].sort());
    expect(rest.every((id) => ledger.runners(id).length === 0)).toBe(true);
    ledger.expectSafe();
  });
});

describe('maxStartsPerSecond against DynamoDB Local', () => {
  it('starts a takeover\'s tasks one per 1/rate of the receiver\'s clock, highest priority first, within the failover bound', async () => {
    const t = await table();
    const tasks = rankedIds('burst', 8);
    await add(t, tasks);
    const ledger = new Ledger();
    const victim = start(t, ledger, 'victim', { capacity: 8 });
    await victim.start();
    await waitFor('the victim runs all eight', () => runningOnce(ledger, tasks.map((x) => x.id)) === 8);
    const rate = 5;
    const receiver = start(t, ledger, 'receiver', { capacity: 10, maxStartsPerSecond: rate });
    const starts: Array<{ task: string; at: number }> = [];
    receiver.on('task-started', ({ task }) => starts.push({ task, at: systemClock.now() }));
    await receiver.start();
    await waitFor('the receiver watches the victim', async () => ((await t.store().getNode('receiver'))?.counter ?? 0) >= 3);
    const killedAt = performance.now();
    await victim.kill();
    const took = await waitFor('all eight running on the receiver', () => tasks.every((x) => ledger.runners(x.id).join() === 'receiver'));
    // In priority order. (A receiver fenced for a moment on a busy machine starts its running
    // tasks again, through the same queue: only each task's first start tells the order.)
    expect([...new Set(starts.map((s) => s.task))]).toEqual(byPriority(tasks));
    // Every start, first or again, one per 1/rate seconds of the receiver's clock (the same
    // clock the test reads; 1 ms for the event's own delivery).
    const gaps = starts.slice(1).map((s, i) => s.at - starts[i]!.at);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(1000 / rate - 1);
    // The bound with the start rate: the last of the eight starts 8/rate seconds (of a slow clock) after the move at most.
    expect(took).toBeLessThan(failoverBoundMs(receiver.config, tasks.length));
    expect(performance.now() - killedAt).toBeGreaterThan((tasks.length - 1) * (1000 / rate));
    ledger.expectSafe();
  });

  it('never starts a queued task that was removed or released before its turn', async () => {
    const t = await table();
    const tasks = rankedIds('queued', 6);
    await add(t, tasks);
    const ledger = new Ledger();
    const a = start(t, ledger, 'a', { capacity: 10, maxStartsPerSecond: 2 });
    await a.start();
    await waitFor('all six held, some queued', () => a.snapshot().tasks.length === 6 && a.queuedTasks().length >= 3);
    const queued = a.queuedTasks();
    const [removed, released] = [queued.at(-1)!, queued.at(-2)!];
    const token = (await t.store().getTask(released))!.token;
    const admin = new TaskAdmin(t.store());
    await admin.remove(removed);
    await admin.release(released);
    // The other four start; the released one may start again only under a new token (claimed back from the pool).
    const others = tasks.map((x) => x.id).filter((id) => id !== removed && id !== released);
    await waitFor('the others running', () => runningOnce(ledger, others) === others.length);
    await waitFor('the queue empty', () => a.queuedTasks().length === 0);
    expect(ledger.starts.filter((s) => s.task === removed)).toEqual([]);
    expect(ledger.starts.filter((s) => s.task === released && s.token === token)).toEqual([]);
    ledger.expectSafe();
  });

  it('never starts a queued task while the node\'s lease is out, and starts it once a heartbeat renews it', async () => {
    const t = await table();
    const tasks = rankedIds('fenced', 6);
    await add(t, tasks);
    const ledger = new Ledger();
    const frozen = new PausableClock();
    const a = start(t, ledger, 'a', { capacity: 10, maxStartsPerSecond: 2 }, frozen);
    await a.start();
    await waitFor('some queued', () => a.snapshot().tasks.length === 6 && a.queuedTasks().length >= 3);
    // Frozen past its lease (no timer fires, as under SIGSTOP). On waking, every timer that
    // fell due fires at once, the start queue's among them, before any heartbeat can land.
    frozen.pause();
    await new Promise((resolve) => setTimeout(resolve, a.config.fenceMs * 2));
    const startsBefore = ledger.starts.length;
    frozen.resume();
    expect(a.leaseValid()).toBe(false);
    expect(ledger.starts.slice(startsBefore)).toEqual([]);
    // The next heartbeat renews the lease (nobody declared the node dead: it has no peers),
    // and the tasks that were waiting start, still one per half second.
    await waitFor('all six running', () => runningOnce(ledger, tasks.map((x) => x.id)) === 6);
    ledger.expectSafe();
  });
});

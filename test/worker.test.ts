import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../lib/clock.js';
import { failoverBoundMs, type KeeperOptions } from '../lib/config.js';
import type { Logger } from '../lib/log.js';
import { keys, taskSlot } from '../lib/store/items.js';
import { AmbiguousWriteError, type Store } from '../lib/store/store.js';
import { Worker } from '../lib/worker.js';
import type { TaskContext } from '../lib/tasks.js';
import { UdpDoorbell } from '../lib/doorbell.js';
import { clockAt, fastSettings, Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { PausableClock } from './support/pausable-clock.js';

/**
 * The counter loop, detection, takeover, fencing and leave, with every worker talking to a
 * real DynamoDB Local through its own client, as separate processes would.
 */
let tables: TestTable[] = [];
let workers: Worker[] = [];
/** Run before the workers are killed (a handler that ignores its signal must be let go first). */
let cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const fn of cleanup) await fn();
  cleanup = [];
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
});

async function setup(taskCount: number): Promise<{ t: TestTable; tasks: string[] }> {
  const t = await freshTable('worker');
  tables.push(t);
  const store = t.store();
  const tasks = Array.from({ length: taskCount }, (_, i) => `task-${String(i).padStart(3, '0')}`);
  for (const id of tasks) await store.createTask({ id, type: 'demo', payload: { i: id } }, new Date().toISOString());
  await store.bumpCluster('tasks');
  return { t, tasks };
}

function start(t: TestTable, ledger: Ledger, specs: Array<{ id: string; clock?: Clock; options?: Partial<KeeperOptions> }>, base: KeeperOptions = fastSettings): Worker[] {
  const started = specs.map((spec) => makeWorker({ ...spec, store: t.store({ requestTimeoutMs: 1000 }) }, ledger, base));
  workers.push(...started);
  return started;
}

async function startAll(list: Worker[]): Promise<void> {
  await Promise.all(list.map((w) => w.start()));
}

/** Owner and fencing token of each task, as the table has them: unchanged means nothing was taken over. */
async function ownership(t: TestTable, tasks: string[]): Promise<string[]> {
  const store = t.store();
  return Promise.all(tasks.map(async (id) => {
    const task = await store.getTask(id);
    return `${id}:${task?.owner}:${task?.ownerInc}:${task?.token}`;
  }));
}

describe('worker against DynamoDB Local', () => {
  it('takes over the tasks of a crashed node within the failover bound', async () => {
    const { t, tasks } = await setup(12);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const victim = nodes.reduce((most, w) => (w.runningTasks().length > most.runningTasks().length ? w : most));
    const lost = victim.runningTasks();
    expect(lost.length).toBeGreaterThan(0);
    await victim.kill();
    const took = await waitFor('takeover', () => lost.every((task) => ledger.runners(task).length === 1));
    expect(took).toBeLessThan(failoverBoundMs(victim.config));
    expect(lost.every((task) => ledger.runners(task)[0] !== victim.id)).toBe(true);
    expect((await t.store().getNode(victim.id))?.state).toBe('dead');
    ledger.expectSafe();
  });

  it('lets exactly one of several observers declare a dead node and take its tasks', async () => {
    const { t, tasks } = await setup(9);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd' }]);
    const declared: string[] = [];
    for (const w of nodes) w.on('declared-dead', ({ node }) => declared.push(`${w.id}->${node}`));
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    // Every node watches every other one (watchPeers 3 with 4 nodes): three observers race.
    await nodes[3]!.kill();
    await waitFor('takeover', () => runningOnce(ledger, tasks) === tasks.length && declared.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 4 * fastSettings.periodMs));
    expect(declared.filter((d) => d.endsWith('->d'))).toHaveLength(1);
    const winner = declared[0]!.split('->')[0];
    expect((await t.store().getNode('d'))?.deadBy).toBe(winner);
    ledger.expectSafe();
  });

  it('never declares a node dead because its clock is hours off', async () => {
    const { t, tasks } = await setup(6);
    const ledger = new Ledger();
    const hour = 3_600_000;
    // Without rebalancing (maxMovesPerTick 0), a change of owner could only come from a false detection.
    const nodes = start(
      t,
      ledger,
      [
        { id: 'ahead', clock: clockAt(1, 5 * hour) },
        { id: 'behind', clock: clockAt(1, -7 * hour) },
        { id: 'plain' },
      ],
      { ...fastSettings, maxMovesPerTick: 0 },
    );
    const events: string[] = [];
    for (const w of nodes) for (const e of ['declared-dead', 'zombie'] as const) w.on(e, () => events.push(`${w.id}:${e}`));
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const before = await ownership(t, tasks);
    await new Promise((resolve) => setTimeout(resolve, 20 * fastSettings.periodMs));
    expect(events).toEqual([]);
    expect(await ownership(t, tasks)).toEqual(before);
    ledger.expectSafe();
  });

  it('with a 2x drift bound, never declares a node dead because its clock runs twice as fast or half as fast', async () => {
    const { t, tasks } = await setup(6);
    const ledger = new Ledger();
    // Without rebalancing (maxMovesPerTick 0), a change of owner could only come from a false detection.
    const base: KeeperOptions = { periodMs: 250, driftBound: 2, staleTicks: 9, maxMovesPerTick: 0 };
    const nodes = start(t, ledger, [{ id: 'fast', clock: clockAt(2, 0) }, { id: 'slow', clock: clockAt(0.5, 0) }, { id: 'plain' }], base);
    const events: string[] = [];
    for (const w of nodes) for (const e of ['declared-dead', 'zombie'] as const) w.on(e, () => events.push(`${w.id}:${e}`));
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const before = await ownership(t, tasks);
    // 40 periods of the slow clock: staleness of the slow node peaks near 4 of the fast node's ticks.
    await new Promise((resolve) => setTimeout(resolve, 40 * base.periodMs!));
    expect(events).toEqual([]);
    expect(await ownership(t, tasks)).toEqual(before);
    ledger.expectSafe();
  }, 60_000);

  it('a frozen node stops counting as owner before its tasks move, and rejoins as a new incarnation', async () => {
    const { t, tasks } = await setup(8);
    const ledger = new Ledger();
    const frozen = new PausableClock();
    const nodes = start(t, ledger, [{ id: 'z', clock: frozen }, { id: 'b' }, { id: 'c' }]);
    const zombie: string[] = [];
    nodes[0]!.on('zombie', ({ declaredBy }) => zombie.push(declaredBy ?? '?'));
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const held = nodes[0]!.runningTasks();
    const incBefore = nodes[0]!.snapshot().inc;
    expect(held.length).toBeGreaterThan(0);
    frozen.pause();
    // Peers take over while the node is frozen; its own runs no longer pass the lease check.
    await waitFor('takeover of the frozen node', () => held.every((task) => ledger.runners(task).length === 1 && ledger.runners(task)[0] !== 'z'));
    frozen.resume();
    await waitFor('zombie rejoin', () => zombie.length === 1 && nodes[0]!.snapshot().phase === 'running' && nodes[0]!.snapshot().inc !== incBefore);
    expect(nodes[0]!.snapshot().inc).toBe(incBefore + 1);
    expect((await t.store().getNode('z'))?.state).toBe('alive');
    await waitFor('every task running once', () => runningOnce(ledger, tasks) === tasks.length);
    ledger.expectSafe();
  });

  it('a graceful leave hands every task over without waiting for detection', async () => {
    const { t, tasks } = await setup(12);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const leaving = nodes[0]!;
    const held = leaving.runningTasks();
    await leaving.stop();
    const took = await waitFor('handover', () => held.every((task) => ledger.runners(task).length === 1), 5000, 5);
    // Detection would need staleTicks periods; a handover needs at most the receivers' next tick.
    expect(took).toBeLessThan(leaving.config.staleTicks * leaving.config.periodMs);
    expect((await t.store().getNode('a'))?.state).toBe('left');
    ledger.expectSafe();
  });

  it('a beat that lands after its own leave marked the incarnation gone is not taken for a declaration: no zombie, no rejoin', async () => {
    const { t, tasks } = await setup(4);
    const ledger = new Ledger();
    const [b] = start(t, ledger, [{ id: 'b' }]);
    // a's heartbeats, once its leave has begun, wait until the leave has marked it gone.
    const real = t.store({ requestTimeoutMs: 1000 });
    let leaving = false;
    let markedLeft = () => {};
    const gone = new Promise<void>((resolve) => (markedLeft = resolve));
    const store = new Proxy(real, {
      get(target, key) {
        const value = Reflect.get(target, key) as unknown;
        if (typeof value !== 'function') return value;
        if (key === 'markLeft') return async (...args: Parameters<Store['markLeft']>) => ((await target.markLeft(...args)) ? (markedLeft(), true) : false);
        if (key === 'heartbeat') return async (...args: Parameters<Store['heartbeat']>) => (leaving && (await gone), target.heartbeat(...args));
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
    const a = makeWorker({ id: 'a', store }, ledger);
    workers.push(a);
    const zombies: unknown[] = [];
    a.on('zombie', (e) => zombies.push(e));
    await startAll([a, b!]);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    leaving = true;
    await a.stop();
    expect((await t.store().getNode('a'))?.state).toBe('left');
    // Time for the held beat to land and be refused.
    await new Promise((resolve) => setTimeout(resolve, 2 * fastSettings.periodMs));
    expect(zombies).toEqual([]);
    expect((await t.store().getNode('a'))?.state).toBe('left');
    ledger.expectSafe();
  });

  it('a leave hands each task over as soon as its own run stops: a handler that ignores its signal holds up only its own task', async () => {
    const { t, tasks } = await setup(9);
    await t.store().createTask({ id: 'stuck', type: 'stubborn', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    const ledger = new Ledger();
    // No rebalancing: a takes every task before b and c start, and keeps them until it leaves.
    const base: KeeperOptions = { ...fastSettings, maxMovesPerTick: 0 };
    const nodes = start(t, ledger, [{ id: 'a', options: { leaveTimeoutMs: 1500 } }, { id: 'b' }, { id: 'c' }], base);
    const [a, b, c] = nodes as [Worker, Worker, Worker];
    const stubborn: TaskContext[] = [];
    const overlaps: string[] = [];
    let release = () => {};
    cleanup.push(async () => release());
    // a's handler ignores its signal; b's is well behaved.
    a.handle('stubborn', (ctx) => {
      stubborn.push(ctx);
      return new Promise<void>((resolve) => (release = resolve));
    });
    b.handle('stubborn', (ctx) => {
      if (stubborn.some((other) => other.isValid())) overlaps.push('stuck started on b while a still believes it runs it');
      return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    });
    await a.start();
    await waitFor('every task running on a', () => a.runningTasks().length === tasks.length + 1);
    await startAll([b, c]);
    await waitFor('b and c watched by a', () => ['b', 'c'].every((id) => a.snapshot().watched.includes(id)));
    const held = tasks;
    const stopping = a.stop();
    const took = await waitFor('handover of the tasks whose runs stopped', () => held.every((task) => ledger.runners(task).length === 1 && ledger.runners(task)[0] !== 'a'), 5000, 5);
    expect(took).toBeLessThan(a.config.leaveTimeoutMs);
    await stopping;
    // The stubborn task stays with a, which never marked itself gone: failover takes it.
    expect((await t.store().getTask('stuck'))?.owner).toBe('a');
    await waitFor('failover of the stubborn task', async () => (await t.store().getTask('stuck'))?.owner === 'b', 10_000);
    expect((await t.store().getNode('a'))?.state).toBe('dead');
    expect(overlaps).toEqual([]);
    ledger.expectSafe();
  });

  it.each(['rebalanced', 'revoked'] as const)('a handler that ignores its signal when its task is %s holds up only that task: the node still detects a dead peer and takes its tasks over', async (way) => {
    const t = await freshTable('worker');
    tables.push(t);
    const tasks = Array.from({ length: 6 }, (_, i) => `stuck-${i}`);
    for (const id of tasks) await t.store().createTask({ id, type: 'stubborn', payload: null }, 'now');
    await t.store().createTask({ id: 'plain', type: 'demo', payload: null }, 'now');
    await t.store().bumpCluster('tasks');
    const ledger = new Ledger();
    // Revoked: no rebalancing, the test takes a task away itself.
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }], way === 'revoked' ? { ...fastSettings, maxMovesPerTick: 0 } : fastSettings);
    const [a, b] = nodes as [Worker, Worker];
    const releases: Array<() => void> = [];
    cleanup.push(async () => releases.forEach((release) => release()));
    // a's stubborn handlers never return until the test ends; b's stop on their signal.
    const signalled: string[] = [];
    a.handle('stubborn', (ctx) => {
      ctx.signal.addEventListener('abort', () => {
        if ((ctx.signal.reason as { reason?: string }).reason === way) signalled.push(ctx.task.id);
      });
      return new Promise<void>((resolve) => releases.push(resolve));
    });
    b.handle('stubborn', (ctx) => new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve())));
    await a.start();
    await waitFor('every task running on a', () => a.runningTasks().length === 7);
    await b.start();
    if (way === 'revoked') {
      // Behind a's back (as an operator's move would): the task goes to b.
      const task = (await t.store().getTask('stuck-0'))!;
      await t.store().moveTask(task.id, task, { owner: 'b', ownerInc: b.snapshot().inc });
      await t.store().notify('a');
    }
    // a signals a stubborn run to stop, and it never does.
    await waitFor(`a run signalled to stop (${way})`, () => signalled.length > 0, 10_000);
    const { tasks: bTasks } = b.snapshot();
    await b.kill();
    // a is b's only watcher: it must still observe, declare and take over.
    await waitFor('b declared dead by a', async () => (await t.store().getNode('b'))?.state === 'dead', failoverBoundMs(a.config) + 5000);
    await waitFor('b\'s tasks running on a', () => bTasks.every((id) => ledger.runners(id).includes('a') || a.runningTasks().includes(id)), 5000);
    // The stubborn tasks never moved away while their handlers ran on a.
    for (const id of tasks.filter((id) => way === 'rebalanced' || id !== 'stuck-0')) expect((await t.store().getTask(id))?.owner).toBe('a');
  });

  it.each([
    ['lands but its reply is lost', 'lost reply'],
    ['is refused', 'refused'],
  ] as const)('a leave whose batch move %s still hands every task over exactly once', async (_, fault) => {
    const { t, tasks } = await setup(30);
    const ledger = new Ledger();
    const batches: number[] = [];
    const batched = new Set<string>();
    let redone = 0;
    // The leaving node's batch moves fail; everything else reaches DynamoDB Local untouched.
    // Single moves of tasks that were in a batch are counted: the redo of a failed batch.
    const real = t.store({ requestTimeoutMs: 1000 });
    const faulty = new Proxy(real, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (key === 'moveTask') {
          return (id: string, ...rest: unknown[]) => {
            if (batched.has(id)) redone += 1;
            return (value as (...a: unknown[]) => unknown).call(target, id, ...rest);
          };
        }
        if (key !== 'moveTasks') return (value as (...a: unknown[]) => unknown).bind(target);
        return async (moves: Array<{ id: string }>, to: unknown) => {
          batches.push(moves.length);
          for (const move of moves) batched.add(move.id);
          if (fault === 'refused') return false;
          await (value as (...a: unknown[]) => Promise<unknown>).call(target, moves, to);
          throw new AmbiguousWriteError('move tasks: reply lost (injected)');
        };
      },
    }) as Store;
    const a = makeWorker({ id: 'a', store: faulty }, ledger);
    workers.push(a);
    const nodes = [a, ...start(t, ledger, [{ id: 'b' }, { id: 'c' }])];
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    const held = a.runningTasks();
    expect(held.length).toBeGreaterThan(2);
    const tokens = new Map((await Promise.all(held.map((id) => real.getTask(id)))).map((task) => [task!.id, task!.token]));
    let handedOver = -1;
    a.on('left', (e) => (handedOver = e.handedOver));
    await a.stop();
    // The leaving node moved them itself, not a peer's sweep of its tombstone afterwards.
    expect(handedOver).toBe(held.length);
    const took = await waitFor('handover', () => held.every((task) => ledger.runners(task).length === 1), 5000, 5);
    expect(batches.length).toBeGreaterThan(0);
    // A batch that landed unseen is confirmed by one read of its tasks; a refused one is redone task by task.
    if (fault === 'lost reply') expect(redone).toBe(0);
    else expect(redone).toBeGreaterThanOrEqual(batched.size);
    // The receivers were told, as after a clean handover: nobody waited for detection or a sweep.
    expect(took).toBeLessThan(a.config.staleTicks * a.config.periodMs);
    // Each task moved exactly once: owner b or c, token one up.
    const after = await Promise.all(held.map((id) => real.getTask(id)));
    expect(after.map((task) => `${task?.id}:${task?.owner === 'b' || task?.owner === 'c'}:${task?.token}`)).toEqual(held.map((id) => `${id}:true:${tokens.get(id)! + 1}`));
    expect((await real.getNode('a'))?.state).toBe('left');
    ledger.expectSafe();
  });

  it('with a fast inbox poll, tasks handed over by a leaving node start within a few poll intervals', async () => {
    const { t, tasks } = await setup(30);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }, { id: 'c' }], { periodMs: 1000, inboxPollMs: 50, doorbell: false });
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    // In steady state: every node past its first beats (a node beats a period after joining).
    const counters = nodes.map((n) => n.snapshot().counter);
    await waitFor('every node beating', () => nodes.every((n, i) => n.snapshot().counter >= counters[i]! + 2), 5000);
    const held = nodes[0]!.runningTasks();
    const started = performance.now();
    await nodes[0]!.stop();
    await waitFor('handover', () => held.every((task) => ledger.runners(task).length === 1), 5000, 5);
    // Well under one period (1000 ms): the receivers did not wait for their next heartbeat.
    expect(performance.now() - started).toBeLessThan(600);
    ledger.expectSafe();
  });

  it('rings the receiver of a leave, which starts the tasks before its next heartbeat and then reads no task list', async () => {
    const { t, tasks } = await setup(30);
    const ledger = new Ledger();
    const stores = { a: t.store({ requestTimeoutMs: 1000 }), b: t.store({ requestTimeoutMs: 1000 }) };
    // Every full read of b's task list (the owner index) from here on.
    const listReads: number[] = [];
    const list = stores.b.tasksOwnedBy.bind(stores.b);
    stores.b.tasksOwnedBy = (id) => {
      if (id === 'b') listReads.push(performance.now());
      return list(id);
    };
    const [a, b] = (['a', 'b'] as const).map((id) => makeWorker({ id, store: stores[id] }, ledger, { periodMs: 2000 }));
    workers.push(a!, b!);
    await a!.start();
    await waitFor('a runs every task', () => a!.runningTasks().length === tasks.length);
    await b!.start();
    // Past b's joining reconciles (its first two maintenance passes), and just after a heartbeat:
    // its next one is a period away.
    const joinedAt = b!.snapshot().counter;
    await waitFor('b settled', () => b!.snapshot().counter >= joinedAt + 3, 20_000, 5);
    const beat = b!.snapshot().counter;
    await waitFor('b beats', () => b!.snapshot().counter > beat, 5000, 2);
    const counter = b!.snapshot().counter;
    const leftAt = performance.now();
    await a!.stop();
    await waitFor('every task runs on b', () => tasks.every((task) => ledger.runners(task).join() === 'b'), 1500, 5);
    expect(b!.snapshot().counter).toBe(counter);
    // The ring told b of every handover with its tasks, so its next heartbeats' inbox is no news.
    // The maintenance after the first of them is over by the second.
    await waitFor('two more heartbeats of b', () => b!.snapshot().counter >= counter + 2, 10_000);
    expect(listReads.filter((at) => at >= leftAt)).toEqual([]);
    ledger.expectSafe();
  });

  it('a ring naming tasks that are not the node\'s own makes it read them and run nothing', async () => {
    const { t, tasks } = await setup(6);
    const ledger = new Ledger();
    const [a, b] = start(t, ledger, [{ id: 'a', options: { capacity: 6 } }, { id: 'b', options: { capacity: 0 } }]);
    await startAll([a!, b!]);
    await waitFor('a runs every task', () => a!.runningTasks().length === tasks.length);
    const bStore = (b as unknown as { node: { store: Store } }).node.store;
    const reads: string[][] = [];
    const getTasks = bStore.getTasks.bind(bStore);
    // Recorded once the read has returned, so that what b makes of it has happened by then.
    bStore.getTasks = (ids) =>
      getTasks(ids).then((found) => {
        reads.push([...ids]);
        return found;
      });
    const bell = (await t.store().getNode('b'))?.bell;
    expect(bell).toMatch(/^127\.0\.0\.1:\d+$/);
    const forger = new UdpDoorbell();
    await forger.open(() => {});
    try {
      forger.ring(bell!, { node: 'b', inbox: 99, tasks });
      await waitFor('b reads the named tasks', () => reads.some((ids) => tasks.every((id) => ids.includes(id))), 5000, 5);
    } finally {
      await forger.close();
    }
    expect(b!.runningTasks()).toEqual([]);
    expect(a!.runningTasks()).toEqual(tasks);
    ledger.expectSafe();
  });

  it('raises the fencing token with every change of owner', async () => {
    const { t, tasks } = await setup(4);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    await nodes[0]!.stop();
    await waitFor('handover', () => runningOnce(ledger, tasks) === tasks.length);
    await nodes[1]!.kill();
    await waitFor('takeover', () => runningOnce(ledger, tasks) === tasks.length && tasks.every((task) => ledger.runners(task)[0] === 'c'));
    for (const task of tasks) {
      const starts = ledger.starts.filter((s) => s.task === task);
      for (let i = 1; i < starts.length; i++) {
        if (starts[i]!.node !== starts[i - 1]!.node) expect(starts[i]!.token).toBeGreaterThan(starts[i - 1]!.token);
        else expect(starts[i]!.token).toBeGreaterThanOrEqual(starts[i - 1]!.token);
      }
      expect((await t.store().getTask(task))?.token).toBe(starts.at(-1)!.token);
    }
    ledger.expectSafe();
  });

  it('skips corrupt node and task items with a warning and never takes tasks from their owner', async () => {
    const { t, tasks } = await setup(6);
    const ledger = new Ledger();
    const warnings: string[] = [];
    const logger: Logger = { info: () => {}, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
    const nodes = ['a', 'b'].map((id) => new Worker({ doorbellHost: '127.0.0.1', ...fastSettings, nodeId: id, store: t.store({ warn: (m) => warnings.push(m) }), logger }).handle('demo', ledger.handler(id)));
    workers.push(...nodes);
    const events: string[] = [];
    for (const w of nodes) for (const e of ['declared-dead', 'zombie'] as const) w.on(e, () => events.push(`${w.id}:${e}`));
    await startAll(nodes);
    await waitFor('all tasks running', () => runningOnce(ledger, tasks) === tasks.length);
    // Rebalancing ends at 3 and 3 (it moves nothing for a gap below 2); from then on, any change
    // of owner would come from the corrupt items.
    await waitFor('balanced', () => nodes.every((w) => w.runningTasks().length === 3));
    const before = await ownership(t, tasks);
    // A node item with nonsense in it, a task item with nonsense in it owned by 'a', and a
    // live node's own item with a broken field.
    await t.putRaw({ ...keys.node('ghost'), id: 'ghost', member: keys.memberPartition, state: 'alive', inc: 1, counter: 'eleven' });
    await t.putRaw({ ...keys.task('broken'), id: 'broken', slot: taskSlot('broken'), owner: 'a', token: 'x', state: 'ready' });
    await t.putRaw({ ...keys.node('b'), id: 'b', member: keys.memberPartition, state: 'alive', inc: (await t.store().getNode('b'))!.inc, counter: 'garbled', watch: 7 });
    const counterA = nodes[0]!.snapshot().counter;
    await waitFor('ten more periods', () => nodes[0]!.snapshot().counter >= counterA + 10);
    // The periodic reconcile (every 30 periods) reads the members and a's tasks at the latest.
    await waitFor('a warning about the corrupt items', () => warnings.some((w) => w.includes('corrupt')), 20_000);
    expect(events).toEqual([]);
    expect(await ownership(t, tasks)).toEqual(before);
    // The owner's heartbeat repaired its own item.
    expect((await t.store().getNode('b'))?.counter).toBeGreaterThan(0);
    ledger.expectSafe();
  });

  it('joins next to nodes that run different protocol settings, but not next to a node of a keeper that judges every peer by its own', async () => {
    const { t } = await setup(0);
    const ledger = new Ledger();
    const [a] = start(t, ledger, [{ id: 'a' }]);
    await a!.start();
    const slower = makeWorker({ id: 'slower', store: t.store(), options: { periodMs: 400 } }, ledger);
    workers.push(slower);
    await slower.start();
    expect((await t.store().getNode('slower'))?.settings).toMatchObject({ periodMs: 400, requestTimeoutMs: 80 });
    await slower.stop();
    // a's item as a keeper from before published settings without its request timeout.
    await t.doc.send(new UpdateCommand({ TableName: t.table, Key: keys.node('a'), UpdateExpression: 'REMOVE settings.requestTimeoutMs' }));
    const odd = makeWorker({ id: 'odd', store: t.store(), options: { periodMs: 400 } }, ledger);
    workers.push(odd);
    await expect(odd.start()).rejects.toThrow(/live node "a" runs an older keeper that judges every peer by its own settings \(periodMs 250, .*; this node: periodMs 400, .*\): upgrade every node/);
    expect(await t.store().getNode('odd')).toBeUndefined();
  });

  it('claims unowned tasks only up to each node\'s capacity', async () => {
    const { t, tasks } = await setup(10);
    const ledger = new Ledger();
    const nodes = start(t, ledger, [{ id: 'a', options: { capacity: 3 } }, { id: 'b', options: { capacity: 4 } }]);
    await startAll(nodes);
    await waitFor('nodes full', () => nodes[0]!.runningTasks().length === 3 && nodes[1]!.runningTasks().length === 4);
    await new Promise((resolve) => setTimeout(resolve, 4 * fastSettings.periodMs));
    expect(nodes[0]!.runningTasks()).toHaveLength(3);
    expect(nodes[1]!.runningTasks()).toHaveLength(4);
    const unowned = await t.store().unownedTasks(100);
    expect(unowned.map((task) => task.id).sort()).toEqual(tasks.filter((task) => ledger.runners(task).length === 0).sort());
    ledger.expectSafe();
  });
});

describe('finite tasks against DynamoDB Local', () => {
  it('completes a finite task with its result and never runs it again', async () => {
    const { t } = await setup(0);
    const store = t.store();
    await store.createTask({ id: 'sum', type: 'add', payload: { a: 2, b: 3 } }, 'now');
    await store.bumpCluster('tasks');
    let runs = 0;
    const worker = new Worker({ doorbellHost: '127.0.0.1', ...fastSettings, nodeId: 'w', store }).handle<{ a: number; b: number }>(
      'add',
      async (ctx) => {
        runs += 1;
        return { sum: ctx.task.payload.a + ctx.task.payload.b };
      },
      { mode: 'finite' },
    );
    workers.push(worker);
    await worker.start();
    await waitFor('task done', async () => (await store.getTask('sum'))?.state === 'done');
    expect(await store.getTask('sum')).toMatchObject({ state: 'done', result: { sum: 5 }, owner: null });
    await new Promise((resolve) => setTimeout(resolve, 4 * fastSettings.periodMs));
    expect(runs).toBe(1);
    expect(worker.runningTasks()).toEqual([]);
  });

  it('retries a throwing handler with backoff and marks the task failed after maxAttempts', async () => {
    const { t } = await setup(0);
    const store = t.store();
    await store.createTask({ id: 'flaky', type: 'boom', payload: null }, 'now');
    await store.bumpCluster('tasks');
    const attempts: number[] = [];
    const worker = new Worker({ doorbellHost: '127.0.0.1', ...fastSettings, nodeId: 'w', store, retryBaseMs: 20, maxAttempts: 3 }).handle(
      'boom',
      async (ctx) => {
        attempts.push(ctx.task.attempts);
        throw new Error('always fails');
      },
      { mode: 'finite' },
    );
    workers.push(worker);
    await worker.start();
    await waitFor('task failed', async () => (await store.getTask('flaky'))?.state === 'failed');
    expect(attempts).toEqual([0, 1, 2]);
    expect(await store.getTask('flaky')).toMatchObject({ state: 'failed', attempts: 3, error: 'Error: always fails', owner: null });
  });
});

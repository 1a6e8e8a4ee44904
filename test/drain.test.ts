import { afterEach, describe, expect, it } from 'vitest';
import { NodeConflictError, NodeNotFoundError, TaskAdmin } from '../lib/admin.js';
import { claimArcs, inArc } from '../lib/protocol/ring.js';
import { taskSlot } from '../lib/store/items.js';
import type { Worker } from '../lib/worker.js';
import { fastSettings, Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { PausableClock } from './support/pausable-clock.js';
import { runSchedule } from './support/simulation.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * An operator's drain (`TaskAdmin.drain`, what `keeper drain` and the task API call) on
 * DynamoDB Local, with every worker on its own client: the drained node hands each of its
 * tasks over once, takes nothing new, is nobody's target while it drains, and takes tasks
 * again once undrained.
 */
let tables: TestTable[] = [];
let workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
});

async function cluster(ids: string[], taskCount: number) {
  const t = await freshTable('drain');
  tables.push(t);
  const admin = new TaskAdmin(t.store());
  const tasks = Array.from({ length: taskCount }, (_, i) => `task-${String(i).padStart(2, '0')}`);
  for (const id of tasks) await admin.add({ id });
  const ledger = new Ledger();
  const nodes = ids.map((id) => makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }) }, ledger, fastSettings));
  workers.push(...nodes);
  await Promise.all(nodes.map((w) => w.start()));
  await waitFor('every task running', () => runningOnce(ledger, tasks) === tasks.length);
  const store = t.store();
  const ownership = async (ids: string[] = tasks) => new Map(await Promise.all(ids.map(async (id) => [id, await store.getTask(id)] as const)));
  // Settled, so that nothing moves unless the drain moves it: no token changed over more
  // heartbeats than rebalancing holds a task (10 passes).
  const tokens = async () => JSON.stringify([...(await ownership()).values()].map((task) => task?.token));
  let last = await tokens();
  await waitFor('no task moving for 12 heartbeats', async () => {
    await passesGo(nodes, 12);
    const now = await tokens();
    const same = now === last;
    last = now;
    return same;
  }, 60_000);
  return { t, admin, ledger, nodes, tasks, store, ownership };
}

/** Waits until every node has run `passes` more heartbeats: time enough for any rebalancing to happen. */
async function passesGo(nodes: Worker[], passes: number): Promise<void> {
  const from = nodes.map((w) => w.snapshot().counter);
  await waitFor(`${passes} more heartbeats`, () => nodes.every((w, i) => w.snapshot().counter >= from[i]! + passes));
}

describe('drain against DynamoDB Local', () => {
  it('moves each of the node\'s tasks once, takes no new task while draining, and takes tasks again once undrained', async () => {
    const { admin, ledger, nodes, tasks, store, ownership } = await cluster(['a', 'b', 'c'], 12);
    const [a] = nodes as [Worker];
    const before = await ownership();
    const onA = tasks.filter((id) => before.get(id)?.owner === 'a');
    expect(onA.length).toBeGreaterThan(0);
    const startsBefore = ledger.starts.length;

    expect(await admin.drain('a')).toMatchObject({ id: 'a', state: 'alive', draining: true });
    await waitFor('a to hand every task over', () => a.runningTasks().length === 0 && runningOnce(ledger, tasks) === tasks.length);
    // Long enough for rebalancing to push tasks towards the empty node, if it did.
    await passesGo(nodes, 15);
    const after = await ownership();
    for (const id of tasks) {
      const was = before.get(id)!;
      const now = after.get(id)!;
      if (was.owner === 'a') expect({ id, owner: now.owner === 'a' ? 'a' : 'elsewhere', token: now.token }).toEqual({ id, owner: 'elsewhere', token: was.token + 1 });
      else expect({ id, owner: now.owner, token: now.token }).toEqual({ id, owner: was.owner, token: was.token });
    }
    // Each drained task started once more (at its new owner), nothing else restarted.
    const drained = ledger.starts.slice(startsBefore);
    expect(drained.map((s) => s.task).sort()).toEqual([...onA].sort());
    expect(drained.filter((s) => s.node === 'a')).toEqual([]);

    // Tasks on a's own arc of the ring, which a would race its predecessor to claim if it
    // took new tasks: added one at a time, each a race of its own.
    const arc = claimArcs('a', ['b', 'c'], true)[0]!;
    const added = Array.from({ length: 200 }, (_, i) => `added-${i}`).filter((id) => inArc(taskSlot(id), arc)).slice(0, 6);
    expect(added).toHaveLength(6);
    for (const id of added) {
      await admin.add({ id });
      await waitFor(`${id} to run`, () => ledger.runners(id).length === 1);
    }
    // They load a's predecessor: time for it to balance, with anyone but a.
    await passesGo(nodes, 15);
    expect(ledger.starts.slice(startsBefore).filter((s) => s.node === 'a')).toEqual([]);
    expect((await store.getNode('a'))?.draining).toBe(true); // through every heartbeat since

    expect(await admin.undrain('a')).toMatchObject({ id: 'a', state: 'alive' });
    // Peers may place on it before its own next heartbeat tells it the drain is lifted.
    await waitFor('a to take tasks again, its drain lifted', () => !a.snapshot().draining && a.runningTasks().length > 0);
    await waitFor('every task running once', () => runningOnce(ledger, [...tasks, ...added]) === tasks.length + added.length);
    ledger.expectSafe();
  });

  it('is nobody\'s takeover target while draining: a crashed node\'s tasks go to the others', async () => {
    const { admin, ledger, nodes, tasks, ownership } = await cluster(['a', 'b', 'c'], 9);
    const [a, , c] = nodes as [Worker, Worker, Worker];
    await admin.drain('a');
    await waitFor('a to hand every task over', () => a.runningTasks().length === 0 && runningOnce(ledger, tasks) === tasks.length);
    const before = await ownership();
    const onC = tasks.filter((id) => before.get(id)?.owner === 'c');
    expect(onC.length).toBeGreaterThan(0);
    await c.kill();
    await waitFor('c\'s tasks taken over', () => onC.every((id) => ledger.runners(id).length === 1 && ledger.runners(id)[0] !== 'c'));
    const after = await ownership(onC);
    for (const id of onC) expect({ id, owner: after.get(id)!.owner, token: after.get(id)!.token }).toEqual({ id, owner: 'b', token: before.get(id)!.token + 1 });
    expect(a.runningTasks()).toEqual([]);
    ledger.expectSafe();
  });

  it('stays draining when the node is declared dead and rejoins', async () => {
    const t = await freshTable('drain-rejoin');
    tables.push(t);
    const admin = new TaskAdmin(t.store());
    const ledger = new Ledger();
    const frozen = new PausableClock();
    const nodes = [makeWorker({ id: 'z', store: t.store({ requestTimeoutMs: 1000 }), clock: frozen }, ledger), makeWorker({ id: 'b', store: t.store({ requestTimeoutMs: 1000 }) }, ledger)];
    workers.push(...nodes);
    const [z] = nodes as [Worker];
    await Promise.all(nodes.map((w) => w.start()));
    await admin.drain('z');
    await waitFor('z to see its drain flag', () => z.snapshot().draining);
    const inc = z.snapshot().inc;
    frozen.pause();
    await waitFor('z declared dead', async () => (await t.store().getNode('z'))?.state === 'dead');
    frozen.resume();
    await waitFor('z to rejoin', () => z.snapshot().phase === 'running' && z.snapshot().inc === inc + 1);
    expect(await t.store().getNode('z')).toMatchObject({ state: 'alive', inc: inc + 1, draining: true });
    expect(z.snapshot().draining).toBe(true);
    // And so it takes nothing new.
    await admin.add({ id: 'after-rejoin' });
    await waitFor('the new task to run', () => ledger.runners('after-rejoin').length === 1);
    expect(ledger.runners('after-rejoin')).toEqual(['b']);
  });

  it('refuses an unknown, dead or departed node, writing nothing', async () => {
    const t = await freshTable('drain-refuse');
    tables.push(t);
    const store = t.store();
    const admin = new TaskAdmin(store);
    await expect(admin.drain('nobody')).rejects.toThrow(NodeNotFoundError);
    await expect(admin.drain('nobody')).rejects.toThrow('node "nobody" does not exist');
    await expect(admin.drain('not a node id!')).rejects.toThrow(/node id must be/);
    expect(await store.getNode('nobody')).toBeUndefined();
    for (const [id, state] of [['gone', 'left'], ['dead', 'dead']] as const) {
      await store.joinNode({ id, inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 1, types: [], watch: {}, joinedAt: 'j' }, undefined);
      if (state === 'left') await store.markLeft(id, 1);
      else await store.declareDead(id, { inc: 1, counter: 0 }, 'observer');
      const before = await store.getNode(id);
      await expect(admin.drain(id)).rejects.toThrow(NodeConflictError);
      await expect(admin.undrain(id)).rejects.toThrow(`node "${id}" ${state === 'left' ? 'has left' : 'is dead'}; only a live node can be undrained`);
      expect(await store.getNode(id)).toEqual(before);
    }
  });
});

describe('drain in the simulator', () => {
  it('100 seeded schedules of drains among crashes, pauses, partitions and leaves: no task runs twice or is lost, and a drain nothing else disturbed empties its node', async () => {
    const failures: string[] = [];
    let drains = 0;
    let handed = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const result = await runSchedule(seed, { warmUp: true, kinds: ['drain', 'drain', 'crash', 'pause', 'partition', 'leave'] });
      drains += result.drains?.length ?? 0;
      handed += (result.drains ?? []).reduce((sum, d) => sum + d.heldAtStart, 0);
      if (result.violations.length > 0) failures.push(`seed ${seed} (${result.faults.join(', ')}): ${result.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
    // The check had something to check: drains of nodes that held tasks.
    expect(drains).toBeGreaterThan(10);
    expect(handed).toBeGreaterThan(25);
  }, 300_000);
});

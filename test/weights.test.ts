import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError, TaskAdmin } from '../lib/admin.js';
import type { KeeperOptions } from '../lib/config.js';
import { placeTasks, rebalanceChoice, unplaceableReason, type Candidate } from '../lib/protocol/placement.js';
import { taskSlot } from '../lib/store/items.js';
import type { Worker } from '../lib/worker.js';
import { fastSettings, Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * Task weights (issue 16, item 1): a node's capacity is in weight units, and claims,
 * takeovers and rebalancing balance weight, not counts. Pure placement first, then real
 * workers on DynamoDB Local.
 */
let tables: TestTable[] = [];
let workers: Worker[] = [];

afterEach(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
});

/** Without rebalancing, tasks move only by claims and takeovers. */
const settings: KeeperOptions = { ...fastSettings, maxMovesPerTick: 0 };

async function table(): Promise<TestTable> {
  const t = await freshTable('weight');
  tables.push(t);
  return t;
}

function start(t: TestTable, ledger: Ledger, id: string, options: Partial<KeeperOptions> = {}): Worker {
  const worker = makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }), options }, ledger, settings);
  workers.push(worker);
  return worker;
}

const node = (id: string, load: number, capacity: number): Candidate => ({ id, inc: 1, load, capacity, types: ['demo'] });
const task = (id: string, weight?: number) => ({ id, type: 'demo', ...(weight === undefined ? {} : { weight }) });

describe('placement by weight (pure)', () => {
  it('never places past capacity by weight, and a task heavier than every capacity is left over', () => {
    const { assigned, unplaced } = placeTasks([task('big', 5), task('mid', 3), task('small', 1)], [node('a', 0, 4), node('b', 2, 4)]);
    expect(unplaced.map((t) => t.id)).toEqual(['big']);
    // mid (3) fits only a (0 + 3 <= 4); small then goes to b (2 + 1)/4 < (3 + 1)/4.
    expect(Object.fromEntries([...assigned].map(([id, list]) => [id, list.map((t) => t.id)]))).toEqual({ a: ['mid'], b: ['small'] });
  });

  it('balances weight, not counts: two nodes end within one heaviest task of each other', () => {
    const tasks = [task('h1', 4), task('h2', 4), ...['l1', 'l2', 'l3', 'l4'].map((id) => task(id, 1))];
    const { assigned } = placeTasks(tasks, [node('a', 0, 20), node('b', 0, 20)]);
    const loads = ['a', 'b'].map((id) => (assigned.get(id) ?? []).reduce((n, t) => n + (t.weight ?? 1), 0));
    expect(loads[0]! + loads[1]!).toBe(12);
    expect(Math.abs(loads[0]! - loads[1]!)).toBeLessThanOrEqual(4);
  });

  it('with every weight 1 places exactly as by counts', () => {
    const tasks = Array.from({ length: 12 }, (_, i) => task(`t${i}`));
    const unweighted = placeTasks(tasks, [node('a', 3, 8), node('b', 0, 5), node('c', 1, 4)]);
    const weighted = placeTasks(tasks.map((t) => ({ ...t, weight: 1 })), [node('a', 3, 8), node('b', 0, 5), node('c', 1, 4)]);
    expect([...weighted.assigned].map(([id, l]) => [id, l.map((t) => t.id)])).toEqual([...unweighted.assigned].map(([id, l]) => [id, l.map((t) => t.id)]));
    expect(weighted.unplaced.map((t) => t.id)).toEqual(unweighted.unplaced.map((t) => t.id));
  });

  it('rebalancing hands over weight within the share, and to the immediate successor one task lighter than the gap', () => {
    const held = [task('h', 4), task('a', 1), task('b', 1), task('c', 1)];
    // A share of 2 takes what fits in order: not the 4, two of weight 1.
    expect(rebalanceChoice(held, 2, 10, 12, 20, false).map((t) => t.id)).toEqual(['a', 'b']);
    // No share, immediate successor, gap 5: the 4 narrows it (to 3), so it goes.
    expect(rebalanceChoice([task('h', 4)], 0, 10, 5, 20, true).map((t) => t.id)).toEqual(['h']);
    // Gap 4: moving the 4 would only swap the sides; nothing goes. Nor without room.
    expect(rebalanceChoice([task('h', 4)], 0, 10, 4, 20, true)).toEqual([]);
    expect(rebalanceChoice([task('h', 4)], 0, 10, 5, 3, true)).toEqual([]);
    expect(rebalanceChoice([task('h', 4)], 0, 10, 5, 20, false)).toEqual([]);
  });

  it('says why a task cannot be placed anywhere', () => {
    expect(unplaceableReason(task('big', 5), [node('a', 0, 4), node('b', 3, 4)])).toBe("weight 5 exceeds every node's capacity");
    expect(unplaceableReason(task('big', 4), [node('a', 4, 4)])).toBeUndefined(); // full now, not for ever
    expect(unplaceableReason({ id: 'x', type: 'report' }, [node('a', 0, 4)])).toBe('no live node runs type report');
  });
});

describe('weights in TaskAdmin', () => {
  it('refuses a weight that is not a whole number from 1 with InvalidInputError, writing nothing', async () => {
    const t = await table();
    const admin = new TaskAdmin(t.store());
    for (const weight of [0, -1, 1.5, '2', null, Number.NaN, 1_000_001]) {
      await expect(admin.add({ id: 'w', weight })).rejects.toThrow(InvalidInputError);
    }
    expect(await t.store().getTask('w')).toBeUndefined();
    expect((await admin.add({ id: 'w', weight: 3 })).task).toMatchObject({ id: 'w', weight: 3 });
    // Weight 1 is the default and is not stored: the owner index lists no weight for it.
    await admin.add({ id: 'one', weight: 1 });
    const free = await t.store().unownedTasks(10);
    expect(free.find((x) => x.id === 'one')).not.toHaveProperty('weight');
    expect(free.find((x) => x.id === 'w')).toMatchObject({ weight: 3 });
  });
});

describe('weights against DynamoDB Local', () => {
  it('claims by weight up to its capacity; a task heavier than every capacity stays in the pool, reported as unplaceable', async () => {
    const t = await table();
    const admin = new TaskAdmin(t.store());
    await admin.add({ id: 'heavy', weight: 6 });
    const light = ['light-0', 'light-1', 'light-2'];
    for (const id of light) await admin.add({ id, weight: 2 });
    const ledger = new Ledger();
    const a = start(t, ledger, 'a', { capacity: 5 });
    await a.start();
    await waitFor('two light tasks running', () => runningOnce(ledger, light) === 2);
    // A few periods more: 4 of 5 taken, and no task of weight 2 fits the 1 left.
    await waitFor('four more beats', async () => ((await t.store().getNode('a'))?.counter ?? 0) >= 6);
    expect(a.runningTasks()).toHaveLength(2);
    expect(ledger.runners('heavy')).toEqual([]);
    const free = (await t.store().unownedTasks(100)).map((x) => x.id).sort();
    expect(free).toHaveLength(2);
    expect(free).toContain('heavy');
    // The node publishes its load (4) beside its task count (2).
    expect(await t.store().getNode('a')).toMatchObject({ taskCount: 2, load: 4, capacity: 5 });
    const { unplaceable } = await admin.status();
    expect(unplaceable).toEqual([{ id: 'heavy', reason: "weight 6 exceeds every node's capacity" }]);
    ledger.expectSafe();
  });

  it("spreads a dead node's tasks by weight: the survivors end within one heaviest task of each other", async () => {
    // Ids whose owner-index order would put both heavy tasks on one node if placement
    // counted tasks instead of weight (placement by count alternates, by weight it does not).
    const ids = idsWhereCountsWouldStack();
    const weights = new Map(ids.map((id, i) => [id, i < 2 ? 4 : 1]));
    const t = await table();
    const admin = new TaskAdmin(t.store());
    for (const id of ids) await admin.add({ id, weight: weights.get(id)! });
    const ledger = new Ledger();
    const victim = start(t, ledger, 'victim', { capacity: 20 });
    await victim.start();
    await waitFor('the victim runs all six', () => runningOnce(ledger, ids) === 6 && ids.every((id) => ledger.runners(id)[0] === 'victim'));
    const peers = [start(t, ledger, 'b', { capacity: 20 }), start(t, ledger, 'c', { capacity: 20 })];
    await Promise.all(peers.map((w) => w.start()));
    await waitFor('both peers watching', async () => ((await t.store().getNode('b'))?.counter ?? 0) >= 3 && ((await t.store().getNode('c'))?.counter ?? 0) >= 3);
    const takeover = new Promise((resolve) => peers.forEach((w) => w.once('takeover', resolve)));
    await victim.kill();
    await takeover;
    await waitFor('all six running on the survivors', () => ids.every((id) => ledger.runners(id).length === 1 && ledger.runners(id)[0] !== 'victim'));
    const load = (w: Worker) => w.runningTasks().reduce((n, id) => n + weights.get(id)!, 0);
    expect(load(peers[0]!) + load(peers[1]!)).toBe(12);
    expect(Math.abs(load(peers[0]!) - load(peers[1]!))).toBeLessThanOrEqual(4);
    ledger.expectSafe();
  });
});

/**
 * Six ids, the first two to weigh 4 and the rest 1, such that a placement by count over two
 * empty nodes b and c, in owner-index (ring slot) order, would give both heavy ones to one
 * node: so that the takeover test above fails if weights are ignored.
 */
function idsWhereCountsWouldStack(): string[] {
  for (let round = 0; round < 1000; round++) {
    const ids = Array.from({ length: 6 }, (_, i) => `w${round}-${i}`);
    const ordered = [...ids].sort((a, b) => (taskSlot(a) < taskSlot(b) ? -1 : 1));
    const byCount = placeTasks(ordered.map((id) => task(id)), [node('b', 0, 20), node('c', 0, 20)]);
    const heavy = ids.slice(0, 2);
    if ([...byCount.assigned.values()].some((list) => heavy.every((h) => list.some((t) => t.id === h)))) return ids;
  }
  throw new Error('no ids found');
}

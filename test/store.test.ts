import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ringKey } from '../lib/protocol/ring.js';
import { keys, taskSlot } from '../lib/store/items.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import type { NodeItem, Store } from '../lib/store/store.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * One contract, two stores: the in-memory store used by the simulator must behave exactly
 * like the DynamoDB store, or the simulator proves nothing.
 */
interface Harness {
  store: Store;
  warnings: string[];
  putRaw(key: { pk: string; sk: string }, record: Record<string, unknown>): Promise<void>;
}

type HarnessFactory = () => Promise<Harness>;

const memoryFactory: HarnessFactory = async () => {
  const warnings: string[] = [];
  const store = new MemoryStore((m) => warnings.push(m));
  return { store, warnings, putRaw: async (key, record) => store.putRaw(key, record) };
};

let table: TestTable | undefined;
const dynamoFactory: HarnessFactory = async () => {
  const warnings: string[] = [];
  const t = table!;
  // Each harness gets its own id space inside the file's table: a unique prefix per harness.
  return { store: t.store({ warn: (m) => warnings.push(m) }), warnings, putRaw: (key, record) => t.putRaw({ ...record, ...key }) };
};

beforeAll(async () => {
  table = await freshTable('conformance');
});
afterAll(async () => {
  await table?.drop();
});

let seq = 0;
const uid = (name: string) => `${name}-${Date.now().toString(36)}-${seq++}`;

function node(id: string, inc = 1, overrides: Partial<NodeItem> = {}): NodeItem {
  return { id, inc, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 10, types: ['demo'], watch: {}, joinedAt: '2026-01-01T00:00:00Z', ...overrides };
}

describe.each([
  ['MemoryStore', memoryFactory],
  ['DynamoStore', dynamoFactory],
])('%s contract', (_name, factory) => {
  let h: Harness;
  beforeAll(async () => {
    h = await factory();
  });

  describe('nodes', () => {
    it('joins a new node once; a second join without the current incarnation fails', async () => {
      const id = uid('n');
      expect(await h.store.joinNode(node(id), undefined)).toBe(true);
      expect(await h.store.joinNode(node(id, 2), undefined)).toBe(false);
      expect((await h.store.getNode(id))?.inc).toBe(1);
    });

    it('rejoins as a new incarnation only from the state that was read', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      expect(await h.store.joinNode(node(id, 2), { inc: 1, state: 'dead' })).toBe(false);
      expect(await h.store.joinNode(node(id, 2, { counter: 7 }), { inc: 1, state: 'alive' })).toBe(true);
      const got = await h.store.getNode(id);
      expect(got?.inc).toBe(2);
      expect(got?.counter).toBe(7);
    });

    it('heartbeat sets the counter idempotently and returns the item with its inbox', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      await h.store.notify(id);
      const watch = { peer: { inc: 1, counter: 5, since: 3 } };
      const input = { id, inc: 1, joinedAt: 'j', counter: 1, taskCount: 2, capacity: 10, types: ['demo'], watch };
      expect(await h.store.peekInbox(id)).toBe(1);
      const first = await h.store.heartbeat(input);
      const again = await h.store.heartbeat(input);
      expect(first.ok && first.node?.counter).toBe(1);
      expect(again.ok && again.node?.counter).toBe(1);
      expect(first.ok && first.node?.inbox).toBe(1);
      expect(first.ok && first.node?.watch).toEqual(watch);
    });

    it('heartbeat stores the load only while it differs from the task count, and removes it when they agree again', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      const beat = { id, inc: 1, joinedAt: 'j', taskCount: 2, capacity: 10, types: ['demo'], watch: {} };
      const weighted = await h.store.heartbeat({ ...beat, counter: 1, load: 7 });
      expect(weighted.ok && weighted.node).toMatchObject({ taskCount: 2, load: 7 });
      expect(await h.store.getNode(id)).toMatchObject({ taskCount: 2, load: 7 });
      const plain = await h.store.heartbeat({ ...beat, counter: 2 });
      expect(plain.ok && plain.node).not.toHaveProperty('load');
      expect(await h.store.getNode(id)).not.toHaveProperty('load');
    });

    it('refuses the heartbeat of a superseded or declared-dead incarnation and shows the current item', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      const stale = await h.store.heartbeat({ id, inc: 9, joinedAt: 'j', counter: 1, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(stale.ok).toBe(false);
      expect(await h.store.declareDead(id, { inc: 1, counter: 0 }, 'observer')).toBe(true);
      const dead = await h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter: 1, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(dead).toMatchObject({ ok: false, current: { state: 'dead', deadBy: 'observer' } });
    });

    it('declares a node dead only on the counter that was observed, and only once', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      await h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter: 3, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(await h.store.declareDead(id, { inc: 1, counter: 2 }, 'a')).toBe(false);
      const race = await Promise.all([h.store.declareDead(id, { inc: 1, counter: 3 }, 'a'), h.store.declareDead(id, { inc: 1, counter: 3 }, 'b')]);
      expect(race.filter(Boolean)).toHaveLength(1);
      expect((await h.store.getNode(id))?.deadBy).toBe(race[0] ? 'a' : 'b');
    });

    it('marks a node left and removes its item only in the expected state', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      expect(await h.store.markLeft(id, 2)).toBe(false);
      expect(await h.store.markLeft(id, 1)).toBe(true);
      expect(await h.store.removeNode(id, { inc: 1, state: 'alive' })).toBe(false);
      expect(await h.store.removeNode(id, { inc: 1, state: 'left' })).toBe(true);
      expect(await h.store.getNode(id)).toBeUndefined();
    });

    it('notify returns each new inbox value with the node\'s doorbell, which the heartbeat keeps', async () => {
      const id = uid('n');
      const plain = uid('n');
      await h.store.joinNode({ ...node(id), bell: '10.0.0.7:4567' }, undefined);
      await h.store.joinNode(node(plain), undefined);
      expect(await h.store.notify(id)).toEqual({ inbox: 1, bell: '10.0.0.7:4567' });
      await h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter: 1, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(await h.store.notify(id)).toEqual({ inbox: 2, bell: '10.0.0.7:4567' });
      expect(await h.store.notify(plain)).toEqual({ inbox: 1 });
    });

    it('drains only a live node; the flag stays through its heartbeats until undrained', async () => {
      const id = uid('n');
      const beat = (counter: number) => h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(await h.store.setDraining(uid('ghost'), true)).toEqual({ ok: false, current: undefined });
      await h.store.joinNode(node(id), undefined);
      expect(await h.store.setDraining(id, true)).toMatchObject({ ok: true, node: { id, draining: true } });
      expect(await beat(1)).toMatchObject({ ok: true, node: { counter: 1, draining: true } });
      expect(await beat(2)).toMatchObject({ ok: true, node: { counter: 2, draining: true } });
      const lifted = await h.store.setDraining(id, false);
      expect(lifted.ok).toBe(true);
      // Removed, not set to false: an item nobody drains looks as it always did.
      expect(lifted.ok && lifted.node).not.toHaveProperty('draining');
      expect((await beat(3)).ok && (await h.store.getNode(id))?.draining).toBeUndefined();
      expect(await h.store.markLeft(id, 1)).toBe(true);
      expect(await h.store.setDraining(id, true)).toMatchObject({ ok: false, current: { state: 'left' } });
      expect((await h.store.getNode(id))?.draining).toBeUndefined();
    });

    it('marks only its own live incarnation leaving; the flag stays through its heartbeats, a new incarnation starts without it', async () => {
      const id = uid('n');
      const beat = (counter: number) => h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(await h.store.markLeaving(uid('ghost'), 1)).toBe(false);
      await h.store.joinNode(node(id, 1, { version: '2.1.0' }), undefined);
      expect((await h.store.getNode(id))?.leaving).toBeUndefined();
      expect(await h.store.markLeaving(id, 2)).toBe(false);
      expect((await h.store.getNode(id))?.leaving).toBeUndefined();
      expect(await h.store.markLeaving(id, 1)).toBe(true);
      expect(await beat(1)).toMatchObject({ ok: true, node: { counter: 1, leaving: true, version: '2.1.0' } });
      expect((await h.store.readNodes([id])).nodes.get(id)).toMatchObject({ leaving: true, version: '2.1.0' });
      expect(await h.store.markLeft(id, 1)).toBe(true);
      expect(await h.store.markLeaving(id, 1)).toBe(false);
      expect(await h.store.joinNode(node(id, 2), { inc: 1, state: 'left' })).toBe(true);
      const rejoined = await h.store.getNode(id);
      expect(rejoined).not.toHaveProperty('leaving');
      expect(rejoined).not.toHaveProperty('version');
    });

    it('rejoins only if the drain flag is still as it was read', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      await h.store.setDraining(id, true);
      await h.store.declareDead(id, { inc: 1, counter: 0 }, 'observer');
      expect(await h.store.joinNode(node(id, 2), { inc: 1, state: 'dead' })).toBe(false);
      expect(await h.store.joinNode(node(id, 2, { draining: true }), { inc: 1, state: 'dead', draining: true })).toBe(true);
      expect((await h.store.getNode(id))?.draining).toBe(true);
      await h.store.setDraining(id, false);
      expect(await h.store.joinNode(node(id, 3, { draining: true }), { inc: 2, state: 'alive', draining: true })).toBe(false);
      expect(await h.store.joinNode(node(id, 3), { inc: 2, state: 'alive' })).toBe(true);
    });

    it('notify never creates a node item', async () => {
      const id = uid('ghost');
      expect(await h.store.notify(id)).toBeUndefined();
      expect(await h.store.getNode(id)).toBeUndefined();
      expect(await h.store.peekInbox(id)).toBeUndefined();
    });

    it('reads several nodes and the cluster change counters in one call', async () => {
      const a = uid('n');
      const b = uid('n');
      await h.store.joinNode(node(a), undefined);
      await h.store.joinNode(node(b), undefined);
      const before = (await h.store.readNodes([])).cluster!;
      await h.store.bumpCluster('tasks');
      await h.store.bumpCluster('tasks');
      const { nodes, cluster } = await h.store.readNodes([a, b, uid('missing')]);
      expect([...nodes.keys()].sort()).toEqual([a, b].sort());
      expect(cluster).toEqual({ tasks: before.tasks + 2 });
      expect((await h.store.readNodes([a], { cluster: false })).cluster).toBeUndefined();
    });

    it('lists members with their state, in ring order', async () => {
      const a = uid('m');
      await h.store.joinNode(node(a), undefined);
      await h.store.markLeft(a, 1);
      const members = await h.store.listMembers();
      expect(members).toContainEqual({ id: a, state: 'left', ring: ringKey(a) });
      expect(members.map((m) => m.ring)).toEqual(members.map((m) => m.ring).sort());
    });

    it('finds ring successors and predecessors of a position with small queries', async () => {
      const ids = Array.from({ length: 6 }, () => uid('ring'));
      for (const id of ids) await h.store.joinNode(node(id), undefined);
      const all = (await h.store.listMembers()).map((m) => m.ring);
      const mine = ids.map(ringKey).sort();
      const pivot = mine[2]!;
      const after = await h.store.ringSuccessors(pivot, 3);
      expect(after.map((m) => m.ring)).toEqual(all.filter((r) => r > pivot).slice(0, 3));
      const before = await h.store.ringPredecessors(pivot, 2);
      expect(before.map((m) => m.ring)).toEqual(all.filter((r) => r < pivot).reverse().slice(0, 2));
      expect((await h.store.ringSuccessors('', 1)).map((m) => m.ring)).toEqual(all.slice(0, 1));
      expect((await h.store.ringPredecessors('\uffff', 1)).map((m) => m.ring)).toEqual(all.slice(-1));
    });

    it('notifies a node of neighbourhood changes without creating items', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      await h.store.notifyNeighbours(id);
      await h.store.notifyNeighbours(id);
      expect((await h.store.getNode(id))?.neighbours).toBe(2);
      const ghost = uid('ghost');
      await h.store.notifyNeighbours(ghost);
      expect(await h.store.getNode(ghost)).toBeUndefined();
    });

    it('never moves a counter back: a heartbeat that lands after a later one is refused', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      const beat = (counter: number) => h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect((await beat(5)).ok).toBe(true);
      // The same value again (a retry after a lost reply) is fine.
      expect((await beat(5)).ok).toBe(true);
      const late = await beat(4);
      expect(late.ok).toBe(false);
      expect(!late.ok && late.current?.counter).toBe(5);
      expect((await h.store.getNode(id))?.counter).toBe(5);
    });

    it('skips a corrupt node item with a warning and repairs it on the owner\'s next heartbeat', async () => {
      const id = uid('n');
      await h.store.joinNode(node(id), undefined);
      // Wrong types and missing fields, but the identity (inc, state) intact.
      await h.putRaw(keys.node(id), { inc: 1, state: 'alive', counter: 'not-a-number', watch: 'garbage' });
      const warningsBefore = h.warnings.length;
      expect((await h.store.readNodes([id])).nodes.has(id)).toBe(false);
      expect(h.warnings.length).toBeGreaterThan(warningsBefore);
      const beat = await h.store.heartbeat({ id, inc: 1, joinedAt: 'j', counter: 4, taskCount: 0, capacity: 1, types: [], watch: {} });
      expect(beat.ok && beat.node?.counter).toBe(4);
      expect((await h.store.readNodes([id])).nodes.get(id)?.counter).toBe(4);
      expect(await h.store.listMembers()).toContainEqual({ id, state: 'alive', ring: ringKey(id) });
    });

    it('lets a new incarnation replace an item whose identity is unreadable', async () => {
      const id = uid('n');
      await h.putRaw(keys.node(id), { id, inc: 'x', state: 42, member: keys.memberPartition });
      expect(await h.store.getNode(id)).toBeUndefined();
      expect(await h.store.joinNode(node(id, 1), undefined)).toBe(true);
      expect((await h.store.getNode(id))?.state).toBe('alive');
    });
  });

  describe('tasks', () => {
    it('creates a task once and lists it as unowned', async () => {
      const id = uid('t');
      expect(await h.store.createTask({ id, type: 'demo', payload: { n: 1 } }, 'now')).toBe('created');
      expect(await h.store.createTask({ id, type: 'other', payload: null }, 'later')).toBe('exists');
      const task = await h.store.getTask(id);
      expect(task).toMatchObject({ id, type: 'demo', payload: { n: 1 }, owner: null, token: 0, state: 'ready', attempts: 0 });
      expect((await h.store.unownedTasks(10_000)).map((t) => t.id)).toContain(id);
    });

    it('lists tasks from the owner index as heads: ownership, type and size, never the payload', async () => {
      const id = uid('t');
      const owner = uid('owner');
      const payload = { blob: 'x'.repeat(3000) };
      await h.store.createTask({ id, type: 'demo', payload }, 'now');
      const [free] = (await h.store.unownedTasks(10_000)).filter((t) => t.id === id);
      expect(free).toEqual({ id, type: 'demo', owner: null, ownerInc: 0, token: 0, itemBytes: expect.any(Number) });
      // The size covers the payload, so that transactions can be kept within DynamoDB's limit.
      expect(free!.itemBytes).toBeGreaterThan(3000);
      await h.store.moveTask(id, free!, { owner, ownerInc: 2 });
      await h.store.requestRelease(id);
      expect(await h.store.tasksOwnedBy(owner)).toEqual([{ id, type: 'demo', owner, ownerInc: 2, token: 1, releaseRequested: true, itemBytes: free!.itemBytes }]);
      // The full item, payload and all, is one read away.
      expect((await h.store.getTasks([id])).get(id)).toMatchObject({ id, payload, owner, token: 1 });
    });

    it('keeps a task\'s priority on its item and in the owner index, through moves; the default 0 is not stored', async () => {
      const urgent = uid('t');
      const plain = uid('t');
      const owner = uid('owner');
      await h.store.createTask({ id: urgent, type: 'demo', payload: null, priority: -7 }, 'now');
      await h.store.createTask({ id: plain, type: 'demo', payload: null, priority: 0 }, 'now');
      expect((await h.store.getTask(urgent))?.priority).toBe(-7);
      expect(await h.store.getTask(plain)).not.toHaveProperty('priority');
      const free = (await h.store.unownedTasks(10_000)).filter((t) => t.id === urgent || t.id === plain);
      expect(Object.fromEntries(free.map((t) => [t.id, t.priority]))).toEqual({ [urgent]: -7, [plain]: undefined });
      // A move (single or in a transaction) keeps it: a takeover places by it without reading items.
      await h.store.moveTask(urgent, free.find((t) => t.id === urgent)!, { owner, ownerInc: 1 });
      expect(await h.store.moveTasks([{ id: plain, from: free.find((t) => t.id === plain)! }], { owner, ownerInc: 1 })).toBe(true);
      const heads = await h.store.tasksOwnedBy(owner);
      expect(heads.map((t) => [t.id, t.priority]).sort()).toEqual([[urgent, -7], [plain, undefined]].sort());
      expect((await h.store.getTasks([urgent])).get(urgent)?.priority).toBe(-7);
    });

    it('keeps a task\'s weight on its item and in the owner index, through moves; the default 1 is not stored', async () => {
      const heavy = uid('t');
      const plain = uid('t');
      const owner = uid('owner');
      await h.store.createTask({ id: heavy, type: 'demo', payload: null, weight: 6 }, 'now');
      await h.store.createTask({ id: plain, type: 'demo', payload: null, weight: 1 }, 'now');
      expect((await h.store.getTask(heavy))?.weight).toBe(6);
      expect(await h.store.getTask(plain)).not.toHaveProperty('weight');
      const free = (await h.store.unownedTasks(10_000)).filter((t) => t.id === heavy || t.id === plain);
      expect(Object.fromEntries(free.map((t) => [t.id, t.weight]))).toEqual({ [heavy]: 6, [plain]: undefined });
      await h.store.moveTask(heavy, free.find((t) => t.id === heavy)!, { owner, ownerInc: 1 });
      expect(await h.store.moveTasks([{ id: plain, from: free.find((t) => t.id === plain)! }], { owner, ownerInc: 1 })).toBe(true);
      const heads = await h.store.tasksOwnedBy(owner);
      expect(heads.map((t) => [t.id, t.weight]).sort()).toEqual([[heavy, 6], [plain, undefined]].sort());
    });

    it('reads free tasks of a stretch of the ring in ring order, wrapping past the end', async () => {
      const prefix = uid('ring');
      const ids = Array.from({ length: 40 }, (_, i) => `${prefix}-${i}`);
      for (const id of ids) await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      const sorted = [...ids].sort((a, b) => (taskSlot(a) < taskSlot(b) ? -1 : 1));
      const ours = (tasks: Array<{ id: string }>) => tasks.map((t) => t.id).filter((id) => id.startsWith(prefix + '-'));
      const at = (i: number) => taskSlot(sorted[i]!);

      // [10th, 30th): the upper bound is exclusive.
      const inner = await h.store.unownedTasks(10_000, { from: at(10), to: at(30) });
      expect(ours(inner)).toEqual(sorted.slice(10, 30));
      // [30th, 10th) goes round the end of the ring: 30..39, then 0..9.
      const wrapped = await h.store.unownedTasks(10_000, { from: at(30), to: at(10) });
      expect(ours(wrapped)).toEqual([...sorted.slice(30), ...sorted.slice(0, 10)]);
      // from = to: the whole ring, starting there.
      expect(ours(await h.store.unownedTasks(10_000, { from: at(25), to: at(25) }))).toEqual([...sorted.slice(25), ...sorted.slice(0, 25)]);
      // A limit keeps the front of the range (other tests' tasks share the table).
      const first = await h.store.unownedTasks(5, { from: at(30), to: at(10) });
      expect(first.map((t) => t.id)).toEqual(wrapped.slice(0, 5).map((t) => t.id));
      // An owned task is not free in any range.
      await h.store.moveTask(sorted[12]!, { owner: null, ownerInc: 0, token: 0 }, { owner: 'x', ownerInc: 1 });
      expect(ours(await h.store.unownedTasks(10_000, { from: at(10), to: at(30) }))).toEqual(sorted.slice(10, 30).filter((_, i) => i !== 2));
    });

    it('moves a task between owners with compare-and-set, raising the fencing token each time', async () => {
      const id = uid('t');
      const owner = uid('owner');
      await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      const claimed = await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner, ownerInc: 3 });
      expect(claimed).toMatchObject({ owner, ownerInc: 3, token: 1 });
      expect((await h.store.tasksOwnedBy(owner)).map((t) => t.id)).toEqual([id]);
      expect((await h.store.unownedTasks(10_000)).map((t) => t.id)).not.toContain(id);
      // A stale expectation loses.
      expect(await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'x', ownerInc: 1 })).toBeUndefined();
      expect(claimed?.previousOwner).toBeUndefined();
      const released = await h.store.moveTask(id, { owner, ownerInc: 3, token: 1 }, { owner: null, ownerInc: 0 });
      expect(released).toMatchObject({ owner: null, token: 2, previousOwner: owner });
      expect(await h.store.tasksOwnedBy(owner)).toEqual([]);
    });

    it('moves a batch of tasks in one transaction: all of them, or none if one is not as expected', async () => {
      const from = uid('from');
      const to = uid('to');
      const ids = Array.from({ length: 100 }, (_, i) => uid(`b${i}`));
      await Promise.all(ids.map(async (id) => {
        await h.store.createTask({ id, type: 'demo', payload: { id } }, 'now');
        await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: from, ownerInc: 2 });
      }));
      const held = { owner: from, ownerInc: 2, token: 1 };
      // One stale expectation (token 0) refuses the whole batch.
      const stale = ids.map((id, i) => ({ id, from: i === 57 ? { ...held, token: 0 } : held }));
      expect(await h.store.moveTasks(stale, { owner: to, ownerInc: 5 })).toBe(false);
      expect((await h.store.tasksOwnedBy(from)).map((t) => t.id).sort()).toEqual([...ids].sort());
      expect((await h.store.getTask(ids[0]!))?.token).toBe(1);

      await h.store.requestRelease(ids[3]!);
      expect(await h.store.moveTasks(ids.map((id) => ({ id, from: held })), { owner: to, ownerInc: 5 })).toBe(true);
      const moved = await h.store.tasksOwnedBy(to);
      expect(moved.map((t) => t.id).sort()).toEqual([...ids].sort());
      expect(moved.every((t) => t.ownerInc === 5 && t.token === 2 && t.releaseRequested === undefined)).toBe(true);
      expect(await h.store.tasksOwnedBy(from)).toEqual([]);
      // The old expectation is spent: the same batch again is refused.
      expect(await h.store.moveTasks(ids.slice(0, 2).map((id) => ({ id, from: held })), { owner: from, ownerInc: 2 })).toBe(false);
    });

    it('refuses a batch move that names a missing or finished task', async () => {
      const [a, b] = [uid('t'), uid('t')];
      await h.store.createTask({ id: a, type: 'demo', payload: null }, 'now');
      const free = { owner: null, ownerInc: 0, token: 0 };
      expect(await h.store.moveTasks([{ id: a, from: free }, { id: b, from: free }], { owner: 'x', ownerInc: 1 })).toBe(false);
      await h.store.createTask({ id: b, type: 'demo', payload: null }, 'now');
      const claimed = await h.store.moveTask(b, free, { owner: 'y', ownerInc: 1 });
      await h.store.updateTask(b, { owner: 'y', ownerInc: 1, token: claimed!.token }, { state: 'done' });
      expect(await h.store.moveTasks([{ id: a, from: free }, { id: b, from: { owner: 'y', ownerInc: 1, token: 1 } }], { owner: 'x', ownerInc: 1 })).toBe(false);
      expect(await h.store.getTask(a)).toMatchObject({ owner: null, token: 0 });
    });

    it('reads several tasks by id in one call, leaving out ids that do not exist', async () => {
      const ids = Array.from({ length: 130 }, (_, i) => uid(`g${i}`));
      await Promise.all(ids.map((id) => h.store.createTask({ id, type: 'demo', payload: { id } }, 'now')));
      await h.store.moveTask(ids[7]!, { owner: null, ownerInc: 0, token: 0 }, { owner: 'n1', ownerInc: 3 });
      const missing = uid('missing');
      const tasks = await h.store.getTasks([...ids, missing]);
      expect(tasks.size).toBe(ids.length);
      expect(tasks.has(missing)).toBe(false);
      expect(tasks.get(ids[7]!)).toMatchObject({ owner: 'n1', ownerInc: 3, token: 1, payload: { id: ids[7] } });
      expect(tasks.get(ids[129]!)).toMatchObject({ owner: null, token: 0 });
    });

    it('lets exactly one of two racing claims win', async () => {
      const id = uid('t');
      await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      const from = { owner: null, ownerInc: 0, token: 0 };
      const results = await Promise.all([h.store.moveTask(id, from, { owner: 'a', ownerInc: 1 }), h.store.moveTask(id, from, { owner: 'b', ownerInc: 1 })]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await h.store.getTask(id))?.token).toBe(1);
    });

    it('records the outcome of a run only for the current owner; a done task leaves the owner index', async () => {
      const id = uid('t');
      const owner = uid('owner');
      await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner, ownerInc: 1 });
      const mine = { owner, ownerInc: 1, token: 1 };
      expect(await h.store.updateTask(id, { ...mine, token: 0 }, { attempts: 1 })).toBe(false);
      expect(await h.store.updateTask(id, mine, { attempts: 1, error: 'boom' })).toBe(true);
      expect(await h.store.updateTask(id, mine, { state: 'done', result: { ok: true } })).toBe(true);
      expect(await h.store.getTask(id)).toMatchObject({ state: 'done', result: { ok: true }, attempts: 1, error: 'boom', owner: null, token: 1 });
      expect(await h.store.tasksOwnedBy(owner)).toEqual([]);
      expect(await h.store.moveTask(id, mine, { owner: 'x', ownerInc: 1 })).toBeUndefined();
    });

    it('stores a checkpoint only for the current owner and token, and keeps it through every move and the outcome', async () => {
      const id = uid('t');
      await h.store.createTask({ id, type: 'demo', payload: { n: 1 } }, 'now');
      await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'a', ownerInc: 1 });
      const a = { owner: 'a', ownerInc: 1, token: 1 };
      expect(await h.store.updateTask(id, a, { checkpoint: '{"cursor":"a1"}' })).toBe(true);
      expect(await h.store.updateTask(id, a, { checkpoint: '{"cursor":"a1"}' })).toBe(true); // the same write again: harmless
      expect((await h.store.getTask(id))?.checkpoint).toEqual({ cursor: 'a1' });
      // Taken over: the new owner gets the checkpoint with the move, the former owner's write is refused.
      expect((await h.store.moveTask(id, a, { owner: 'b', ownerInc: 4 }))?.checkpoint).toEqual({ cursor: 'a1' });
      expect(await h.store.updateTask(id, a, { checkpoint: '{"cursor":"late"}' })).toBe(false);
      const b = { owner: 'b', ownerInc: 4, token: 2 };
      expect(await h.store.updateTask(id, b, { checkpoint: '{"cursor":"b1"}' })).toBe(true);
      // A batch move and a release to the pool keep it too; the owner index never carries it.
      expect(await h.store.moveTasks([{ id, from: b }], { owner: 'c', ownerInc: 1 })).toBe(true);
      expect(await h.store.moveTask(id, { owner: 'c', ownerInc: 1, token: 3 }, { owner: null, ownerInc: 0 })).toMatchObject({ checkpoint: { cursor: 'b1' } });
      expect((await h.store.unownedTasks(10_000)).find((t) => t.id === id)).not.toHaveProperty('checkpoint');
      expect(await h.store.getTask(id)).toMatchObject({ owner: null, token: 4, payload: { n: 1 }, checkpoint: { cursor: 'b1' } });
      // A finite outcome: the result goes beside the checkpoint, each where it was.
      await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 4 }, { owner: 'd', ownerInc: 2 });
      const d = { owner: 'd', ownerInc: 2, token: 5 };
      expect(await h.store.updateTask(id, d, { checkpoint: 'null' })).toBe(true);
      expect(await h.store.updateTask(id, d, { state: 'done', result: { rows: 3 } })).toBe(true);
      expect(await h.store.getTask(id)).toMatchObject({ state: 'done', result: { rows: 3 }, checkpoint: null });
      expect(await h.store.updateTask(id, d, { checkpoint: '{"after":"done"}' })).toBe(false);
    });

    it('skips a task item whose checkpoint is not JSON, with a warning', async () => {
      const id = uid('t');
      await h.putRaw(keys.task(id), { id, type: 'demo', payload: null, slot: taskSlot(id), owner: 'a', ownerInc: 1, token: 1, state: 'ready', attempts: 0, createdAt: 'now', checkpoint: '{cursor' });
      const warningsBefore = h.warnings.length;
      expect(await h.store.getTask(id)).toBeUndefined();
      expect(h.warnings.slice(warningsBefore).join('\n')).toMatch(/checkpoint is not JSON/);
    });

    it('marks a release request and clears it when the task moves', async () => {
      const id = uid('t');
      await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      expect(await h.store.requestRelease(uid('missing'))).toBeUndefined();
      expect((await h.store.requestRelease(id))?.releaseRequested).toBe(true);
      const moved = await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'a', ownerInc: 1 });
      expect(moved?.releaseRequested).toBeUndefined();
    });

    it('updates a ready task\'s payload only on the token that was read: token one up, attempts afresh, owner, checkpoint and release request kept', async () => {
      const id = uid('t');
      await h.store.createTask({ id, type: 'demo', payload: { box: 'old' } }, 'now');
      await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'a', ownerInc: 3 });
      const a = { owner: 'a', ownerInc: 3, token: 1 };
      expect(await h.store.updateTask(id, a, { attempts: 2, error: 'boom', checkpoint: '{"cursor":7}' })).toBe(true);
      await h.store.requestRelease(id);
      // A token other than the current one: refused, with the item as it is.
      const stale = await h.store.updatePayload(id, 0, { payload: { box: 'new' }, itemBytes: 321 });
      expect(stale).toMatchObject({ ok: false, current: { token: 1, payload: { box: 'old' } } });
      const updated = await h.store.updatePayload(id, 1, { payload: { box: 'new' }, itemBytes: 321 });
      expect(updated).toMatchObject({ ok: true, task: { owner: 'a', ownerInc: 3, token: 2, payload: { box: 'new' }, attempts: 0, checkpoint: { cursor: 7 }, releaseRequested: true, itemBytes: 321 } });
      expect(updated.ok && updated.task).not.toHaveProperty('error');
      // The run under the old token can write nothing more: no checkpoint, no outcome.
      expect(await h.store.updateTask(id, a, { checkpoint: '{"cursor":8}' })).toBe(false);
      expect(await h.store.updateTask(id, a, { state: 'done', result: 1 })).toBe(false);
      // The owner index carries the new token (what a reconcile compares), never the payload.
      const head = (await h.store.tasksOwnedBy('a')).find((t) => t.id === id);
      expect(head).toMatchObject({ token: 2, itemBytes: 321 });
      expect(head).not.toHaveProperty('payload');
      // Of two updates on the same token, exactly one wins.
      const race = await Promise.all([h.store.updatePayload(id, 2, { payload: 'x', itemBytes: 1 }), h.store.updatePayload(id, 2, { payload: 'y', itemBytes: 1 })]);
      expect(race.filter((r) => r.ok)).toHaveLength(1);
      expect((await h.store.getTask(id))?.token).toBe(3);
    });

    it('refuses a payload update of a missing, done or failed task, writing nothing', async () => {
      expect(await h.store.updatePayload(uid('missing'), 0, { payload: 1, itemBytes: 1 })).toEqual({ ok: false, current: undefined });
      expect(await h.store.getTask(uid('missing'))).toBeUndefined();
      for (const state of ['done', 'failed'] as const) {
        const id = uid('t');
        await h.store.createTask({ id, type: 'demo', payload: 'old' }, 'now');
        await h.store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'a', ownerInc: 1 });
        await h.store.updateTask(id, { owner: 'a', ownerInc: 1, token: 1 }, { state, result: 'r' });
        expect(await h.store.updatePayload(id, 1, { payload: 'new', itemBytes: 1 })).toMatchObject({ ok: false, current: { state, token: 1, payload: 'old' } });
        expect(await h.store.getTask(id)).toMatchObject({ state, token: 1, payload: 'old', result: 'r' });
      }
    });

    it('deletes a task, conditionally on its ownership when asked', async () => {
      const id = uid('t');
      await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      expect(await h.store.deleteTask(id, { owner: 'a', ownerInc: 1, token: 0 })).toBeUndefined();
      expect((await h.store.deleteTask(id, { owner: null, ownerInc: 0, token: 0 }))?.id).toBe(id);
      expect(await h.store.getTask(id)).toBeUndefined();
      expect(await h.store.deleteTask(id)).toBeUndefined();
    });

    it('pages through all tasks without repeats', async () => {
      const prefix = uid('page');
      const ids = Array.from({ length: 23 }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
      for (const id of ids) await h.store.createTask({ id, type: 'demo', payload: null }, 'now');
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await h.store.listTasks(10, cursor);
        expect(page.items.length).toBeLessThanOrEqual(10);
        seen.push(...page.items.map((t) => t.id));
        cursor = page.cursor;
        pages++;
      } while (cursor && pages < 100);
      const mine = seen.filter((id) => id.startsWith(prefix));
      expect(mine.sort()).toEqual(ids);
      expect(new Set(seen).size).toBe(seen.length);
    });

    it('skips a corrupt task item with a warning instead of failing the query', async () => {
      const owner = uid('owner');
      const good = uid('t');
      await h.store.createTask({ id: good, type: 'demo', payload: null }, 'now');
      await h.store.moveTask(good, { owner: null, ownerInc: 0, token: 0 }, { owner, ownerInc: 1 });
      await h.putRaw(keys.task('corrupt-' + owner), { id: 'corrupt-' + owner, slot: taskSlot('corrupt-' + owner), owner, token: 'seven', state: 'ready' });
      const warningsBefore = h.warnings.length;
      expect((await h.store.tasksOwnedBy(owner)).map((t) => t.id)).toEqual([good]);
      expect(h.warnings.length).toBeGreaterThan(warningsBefore);
    });
  });
});

describe('the DynamoDB table', () => {
  it('keeps payloads out of the owner index: its entries carry the task head only', async () => {
    const t = table!;
    const id = `heads-${Date.now()}`;
    await t.store().createTask({ id, type: 'demo', payload: { blob: 'x'.repeat(3000) } }, 'now');
    const out = await t.doc.send(
      new QueryCommand({ TableName: t.table, IndexName: keys.ownerIndex, KeyConditionExpression: '#owner = :free', ExpressionAttributeNames: { '#owner': 'owner' }, ExpressionAttributeValues: { ':free': keys.freeOwner } }),
    );
    const entry = (out.Items ?? []).find((item) => item['pk'] === keys.task(id).pk);
    expect(entry).toBeDefined();
    expect(Object.keys(entry!).sort()).toEqual(['itemBytes', 'owner', 'ownerInc', 'pk', 'sk', 'slot', 'token', 'type']);
  });

  it('projects a task\'s priority into the owner index, so that placing by it needs no read of the item', async () => {
    const t = table!;
    const id = `prio-${Date.now()}`;
    await t.store().createTask({ id, type: 'demo', payload: { blob: 'x'.repeat(100) }, priority: 5 }, 'now');
    const out = await t.doc.send(
      new QueryCommand({ TableName: t.table, IndexName: keys.ownerIndex, KeyConditionExpression: '#owner = :free', ExpressionAttributeNames: { '#owner': 'owner' }, ExpressionAttributeValues: { ':free': keys.freeOwner } }),
    );
    const entry = (out.Items ?? []).find((item) => item['pk'] === keys.task(id).pk);
    expect(entry?.['priority']).toBe(5);
    expect(entry).not.toHaveProperty('payload');
  });

  it('projects a task\'s weight into the owner index, so that placing by it needs no read of the item', async () => {
    const t = table!;
    const id = `weight-${Date.now()}`;
    await t.store().createTask({ id, type: 'demo', payload: { blob: 'x'.repeat(100) }, weight: 3 }, 'now');
    const out = await t.doc.send(
      new QueryCommand({ TableName: t.table, IndexName: keys.ownerIndex, KeyConditionExpression: '#owner = :free', ExpressionAttributeNames: { '#owner': 'owner' }, ExpressionAttributeValues: { ':free': keys.freeOwner } }),
    );
    const entry = (out.Items ?? []).find((item) => item['pk'] === keys.task(id).pk);
    expect(entry?.['weight']).toBe(3);
    expect(entry).not.toHaveProperty('payload');
  });
});

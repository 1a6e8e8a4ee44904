import { afterEach, describe, expect, it } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { mixedFailoverBoundMs, type KeeperOptions } from '../lib/config.js';
import type { TaskContext } from '../lib/tasks.js';
import { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, runningOnce, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * Deploys on DynamoDB Local with real workers, each on its own client (issue 15): a leaving
 * node hands its tasks to nodes that will stay, the newest application version first, and
 * never to a node that is leaving itself; rebalancing neither chases a join with tasks a
 * leave moves anyway nor pushes tasks towards a node about to be replaced. Each task moves
 * once per deploy, whether the workers are replaced one at a time or all at once (ECS's
 * 200 % pattern).
 */
/** Half a second: the deploys run six workers in this process, on a machine that may be busy. */
const settings = { periodMs: 500 };

let tables: TestTable[] = [];
let workers: Worker[] = [];
/** Handlers held up by a test, let go before the workers are killed (kill waits for every run). */
let holds: Array<() => void> = [];

afterEach(async () => {
  for (const release of holds) release();
  holds = [];
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
});

async function cluster(ids: string[], taskCount: number, appVersion: string | undefined) {
  const t = await freshTable('deploy');
  tables.push(t);
  const admin = new TaskAdmin(t.store());
  const tasks = Array.from({ length: taskCount }, (_, i) => `task-${String(i).padStart(2, '0')}`);
  for (const id of tasks) await admin.add({ id });
  const ledger = new Ledger();
  const fences: string[] = [];
  const worker = (id: string, version = appVersion, options: Partial<KeeperOptions> = {}) => {
    const w = makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }), options: { ...options, ...(version === undefined ? {} : { appVersion: version }) } }, ledger, settings);
    // Faults a loaded machine causes (a lease run out, a node declared dead and rejoined)
    // move tasks for reasons of their own: listed with a failure.
    w.on('fenced', (e) => fences.push(`${id} fenced ${JSON.stringify(e)}`));
    w.on('declared-dead', (e) => fences.push(`${id} declared ${e.node} dead`));
    w.on('zombie', () => fences.push(`${id} rejoined`));
    workers.push(w);
    return w;
  };
  const nodes = ids.map((id) => worker(id));
  await Promise.all(nodes.map((w) => w.start()));
  await waitFor('every task running', () => runningOnce(ledger, tasks) === tasks.length);
  const store = t.store();
  const ownership = async () => new Map(await Promise.all(tasks.map(async (id) => [id, await store.getTask(id)] as const)));
  // Settled, so that nothing moves unless the deploy moves it: no token changed over more
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
  return { t, admin, ledger, nodes, tasks, store, ownership, worker, fences };
}

/** The runs started since `from`, as task@node:token, each once (restarts under the same token are one run). */
function runsSince(ledger: Ledger, from: number): string[] {
  return [...new Set(ledger.starts.slice(from).map((s) => `${s.task}@${s.node}:${s.token}`))];
}

/** Waits until every node has run `passes` more heartbeats: time enough for any rebalancing to happen. */
async function passesGo(nodes: Worker[], passes: number): Promise<void> {
  const from = nodes.map((w) => w.snapshot().counter);
  await waitFor(`${passes} more heartbeats`, () => nodes.every((w, i) => w.snapshot().counter >= from[i]! + passes));
}

describe('deploys against DynamoDB Local', () => {
  it('200 %: new nodes join without attracting a move, then every old node leaves at once and each task moves once, straight to a new node', async () => {
    const { ledger, nodes: old, tasks, ownership, worker, fences } = await cluster(['old-a', 'old-b', 'old-c'], 18, '1.0.0');
    const before = await ownership();
    const fresh = ['new-a', 'new-b', 'new-c'].map((id) => worker(id, '1.1.0'));
    await Promise.all(fresh.map((w) => w.start()));
    // Long enough for the old nodes to balance towards the empty new ones, if they did.
    await passesGo([...old, ...fresh], 15);
    const joined = await ownership();
    for (const id of tasks) expect({ id, token: joined.get(id)!.token }).toEqual({ id, token: before.get(id)!.token });

    const startsBefore = ledger.starts.length;
    await Promise.all(old.map((w) => w.stop()));
    await waitFor('every task running once', () => runningOnce(ledger, tasks) === tasks.length);
    // Time for rebalancing among the new nodes, and for any task that went astray to move on.
    await passesGo(fresh, 15);
    const after = await ownership();
    for (const id of tasks) {
      const now = after.get(id)!;
      expect({ id, newOwner: now.owner?.startsWith('new-'), token: now.token }).toEqual({ id, newOwner: true, token: before.get(id)!.token + 1 });
    }
    // Each task started under one new token only, on a new node. (A node whose lease lapsed on
    // a busy machine restarts its tasks under the same token: no move, so counted once.)
    const starts = runsSince(ledger, startsBefore);
    expect(starts.map((s) => s.split('@')[0]).sort(), `${starts.join(' ')} fences: ${fences.join('; ')}`).toEqual([...tasks].sort());
    expect(starts.filter((s) => !s.includes('@new-'))).toEqual([]);
    ledger.expectSafe();
  });

  it('one at a time: start a new node, then stop an old one, three times over; each task moves once', async () => {
    const { ledger, nodes: old, tasks, ownership, worker, fences } = await cluster(['old-a', 'old-b', 'old-c'], 18, '1.0.0');
    const before = await ownership();
    const startsBefore = ledger.starts.length;
    const live = [...old];
    for (const [i, name] of ['new-a', 'new-b', 'new-c'].entries()) {
      const w = worker(name, '1.1.0');
      await w.start();
      live.push(w);
      // The orchestrator's health checks take a few periods: time enough to chase the join.
      await passesGo(live, 6);
      const leaving = old[i]!;
      await leaving.stop();
      live.splice(live.indexOf(leaving), 1);
      await waitFor('every task running once', () => runningOnce(ledger, tasks) === tasks.length);
    }
    // As the deploy left them. (Balancing among the new nodes may move a task later, where the
    // ring's new order makes a gap of two out of the old nodes' uneven counts; the bench's
    // deploy scenario counts those moves.)
    const after = await ownership();
    const path = (id: string) => runsSince(ledger, startsBefore).filter((r) => r.startsWith(`${id}@`)).join(' ');
    for (const id of tasks) {
      const now = after.get(id)!;
      expect({ id, newOwner: now.owner?.startsWith('new-'), token: now.token }, `${path(id)}; ${fences.join('; ')}`).toEqual({ id, newOwner: true, token: before.get(id)!.token + 1 });
    }
    const starts = runsSince(ledger, startsBefore);
    expect(starts.map((s) => s.split('@')[0]).sort(), `${starts.join(' ')}; ${fences.join('; ')}`).toEqual([...tasks].sort());
    ledger.expectSafe();
  });

  it('hands a leaving node\'s tasks to the new version even where an old node that stays looks lighter', async () => {
    // The new task definition runs fewer tasks per worker: by load relative to capacity, the
    // old node that stays would get most of the first leave's tasks, and move them again.
    const { ledger, nodes: old, tasks, ownership, worker, fences } = await cluster(['old-a', 'old-b'], 12, '1.0.0');
    const before = await ownership();
    const startsBefore = ledger.starts.length;
    const fresh = worker('new-a', '1.1.0', { capacity: 20 });
    await fresh.start();
    await passesGo([...old, fresh], 6);
    for (const leaving of old) {
      await leaving.stop();
      await waitFor('every task running once', () => runningOnce(ledger, tasks) === tasks.length);
    }
    const after = await ownership();
    const path = (id: string) => runsSince(ledger, startsBefore).filter((r) => r.startsWith(`${id}@`)).join(' ');
    for (const id of tasks) {
      const now = after.get(id)!;
      expect({ id, owner: now.owner, token: now.token }, `${path(id)}; ${fences.join('; ')}`).toEqual({ id, owner: 'new-a', token: before.get(id)!.token + 1 });
    }
    ledger.expectSafe();
  });

  it('never hands a task to a node that is leaving: a leave while a peer still waits for a slow handler puts the tasks back in the pool instead', async () => {
    const t = await freshTable('deploy');
    tables.push(t);
    const admin = new TaskAdmin(t.store());
    const tasks = Array.from({ length: 8 }, (_, i) => `task-${i}`);
    for (const id of tasks) await admin.add({ id });
    const ledger = new Ledger();
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    holds.push(() => release());
    let stuck: string | undefined;
    const make = (id: string) => {
      const w = makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }) }, ledger, settings);
      workers.push(w);
      return w;
    };
    const a = make('a');
    // b's first task ignores its signal until released: b stays leaving, with a light load.
    const b = makeWorkerWithSlowTask('b', t, ledger, (id) => (stuck ??= id), released);
    workers.push(b);
    await Promise.all([a.start(), b.start()]);
    await waitFor('every task running', () => runningOnce(ledger, tasks) === tasks.length);
    await waitFor('b to hold a task', () => stuck !== undefined && b.runningTasks().includes(stuck));

    const bLeft = b.stop();
    const store = t.store();
    await waitFor('b marked leaving, its other tasks on a', async () => (await store.getNode('b'))?.leaving === true && (await store.tasksOwnedBy('b')).length === 1);
    await a.stop();
    const owners = await Promise.all(tasks.map(async (id) => [id, (await store.getTask(id))?.owner ?? null] as const));
    expect(owners.filter(([id, owner]) => owner === 'b' && id !== stuck)).toEqual([]);
    expect(owners.filter(([, owner]) => owner === 'a')).toEqual([]);

    const c = make('c');
    await c.start();
    release();
    await bLeft;
    await waitFor('every task running once, on c', () => tasks.every((id) => ledger.runners(id).join() === 'c'));
    ledger.expectSafe();
  });
});

describe('settings roll-outs against DynamoDB Local', () => {
  it('a rolling change of periodMs (500 to 750 ms) completes one node at a time, each task moving once', async () => {
    const { ledger, nodes: old, tasks, ownership, worker, fences } = await cluster(['old-a', 'old-b', 'old-c'], 12, '1.0.0');
    const before = await ownership();
    const startsBefore = ledger.starts.length;
    const live = [...old];
    for (const [i, name] of ['new-a', 'new-b', 'new-c'].entries()) {
      const w = worker(name, '1.1.0', { periodMs: 750 });
      await w.start();
      live.push(w);
      await passesGo(live, 6);
      const leaving = old[i]!;
      await leaving.stop();
      live.splice(live.indexOf(leaving), 1);
      await waitFor('every task running once', () => runningOnce(ledger, tasks) === tasks.length);
    }
    const after = await ownership();
    for (const id of tasks) {
      const now = after.get(id)!;
      expect({ id, newOwner: now.owner?.startsWith('new-'), token: now.token }, fences.join('; ')).toEqual({ id, newOwner: true, token: before.get(id)!.token + 1 });
    }
    expect(fences).toEqual([]);
    ledger.expectSafe();
  });

  it('halfway through the roll-out, a crash of either kind of node is taken over within the larger peer\'s bound, by nodes of both kinds', async () => {
    // The same application version: a settings change that comes with a new version moves no
    // task to the new nodes until the old ones leave (the test above).
    const { ledger, nodes: old, tasks, worker, fences } = await cluster(['old-a', 'old-b', 'old-c'], 12, undefined);
    const fresh = ['new-a', 'new-b', 'new-c'].map((id) => worker(id, undefined, { periodMs: 750 }));
    await Promise.all(fresh.map((w) => w.start()));
    const live = [...old, ...fresh];
    await passesGo(live, 4);
    const bound = mixedFailoverBoundMs([old[0]!.config, fresh[0]!.config]);
    for (const victim of [fresh[0]!, old[0]!]) {
      await waitFor(`${victim.id} holding tasks`, () => victim.runningTasks().length > 0);
      const lost = victim.runningTasks();
      await victim.kill();
      live.splice(live.indexOf(victim), 1);
      const took = await waitFor(`takeover of ${victim.id}`, () => lost.every((task) => ledger.runners(task).length === 1), 3 * bound);
      expect(took, `${victim.id}'s tasks ran again after ${Math.round(took)} ms; ${fences.join('; ')}`).toBeLessThan(bound);
    }
    // Nobody else was taken for dead on the way.
    expect(fences.filter((f) => !/declared (new-a|old-a) dead/.test(f))).toEqual([]);
    ledger.expectSafe();
  });
});

/** A worker whose first task's handler ignores its signal until `released` (then ends as the ledger's does). */
function makeWorkerWithSlowTask(id: string, t: TestTable, ledger: Ledger, pick: (task: string) => string, released: Promise<void>): Worker {
  const inner = ledger.handler(id);
  const handler = async (ctx: TaskContext) => {
    const run = inner(ctx);
    if (pick(ctx.task.id) !== ctx.task.id) return run;
    await run;
    await released;
  };
  return new Worker({ doorbellHost: '127.0.0.1', ...settings, nodeId: id, store: t.store({ requestTimeoutMs: 1000 }) }).handle('demo', handler);
}

import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError, PayloadTooLargeError, TaskAdmin, TaskConflictError, TaskNotFoundError } from '../lib/admin.js';
import { limits } from '../lib/store/items.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import type { Store } from '../lib/store/store.js';
import type { TaskContext, TaskHandler } from '../lib/tasks.js';
import { Worker } from '../lib/worker.js';
import type { Clock } from '../lib/clock.js';
import { fastSettings, waitFor } from './support/cluster.js';
import { freshTable } from './support/dynamo.js';
import { PausableClock } from './support/pausable-clock.js';

/**
 * An operator's payload update (`TaskAdmin.update`, what `keeper task update` and
 * `PATCH /tasks/{id}` call) with real workers: the owner restarts the task with the new
 * payload under a new token, never with two runs at once; the old run can write nothing more;
 * an unowned task is claimed with it; a finished task stays finished; concurrent updates are
 * compare-and-set. On DynamoDB Local and on the in-memory store.
 */
let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
});

/**
 * A store for each worker of one test (its own client on DynamoDB Local, or one shared
 * MemoryStore), and the period to run at: on DynamoDB Local a longer one, so that a slow
 * heartbeat on a busy machine does not fence the owner (which stops its runs too) in the
 * middle of a test about why a run stops.
 */
const backends: Array<[string, () => Promise<() => Store>, number]> = [
  [
    'DynamoDB Local',
    async () => {
      const t = await freshTable('payload');
      cleanup.push(() => t.drop());
      return () => t.store({ requestTimeoutMs: 1000 });
    },
    1000,
  ],
  [
    'MemoryStore',
    async () => {
      const store = new MemoryStore();
      return () => store;
    },
    fastSettings.periodMs,
  ],
];

function worker(id: string, store: Store, handlers: Record<string, TaskHandler>, options: { finite?: boolean; maxAttempts?: number; resyncTicks?: number; periodMs?: number; clock?: Clock } = {}): Worker {
  const w = new Worker({
    doorbellHost: '127.0.0.1',
    ...fastSettings,
    retryBaseMs: 20,
    nodeId: id,
    store,
    ...(options.periodMs ? { periodMs: options.periodMs } : {}),
    ...(options.resyncTicks ? { resyncTicks: options.resyncTicks } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  for (const [type, handler] of Object.entries(handlers)) {
    w.handle(type, handler, { ...(options.finite ? { mode: 'finite' as const } : {}), ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}) });
  }
  cleanup.push(() => w.kill());
  return w;
}

/** Waits until every worker has run `beats` more heartbeats. */
async function beatsGo(workers: Worker[], beats: number): Promise<void> {
  const from = workers.map((w) => w.snapshot().counter);
  await waitFor(`${beats} more heartbeats`, () => workers.every((w, i) => w.snapshot().counter >= from[i]! + beats));
}

const rejection = (p: Promise<unknown>) => p.then(() => undefined, (error: unknown) => error);

interface Run {
  node: string;
  token: number;
  payload: unknown;
  checkpoint: unknown;
  attempts: number;
  ctx: TaskContext;
  startedAt: number;
  /** Whether another run of the task was still going when this one started. */
  overlapped: boolean;
  /** What the checkpoint the run writes on its way out came to: 'stored', or CheckpointError's reason. */
  stopCheckpoint?: string;
  stopReason?: string;
  ended: boolean;
}

describe.each(backends)('payload update on %s', (_name, backend, periodMs) => {
  it('the owner stops the old run and, once it is over, restarts the task with the new payload under the next token; the old run can checkpoint no more', async () => {
    const storeFor = await backend();
    const store = storeFor();
    const admin = new TaskAdmin(store);
    await admin.add({ id: 'mailbox', type: 'poll', payload: { box: 'old' } });
    const runs: Run[] = [];
    let letFirstEnd!: () => void;
    const firstHeld = new Promise<void>((resolve) => (letFirstEnd = resolve));
    const handler = (node: string) => async (ctx: TaskContext) => {
      const run: Run = { node, token: ctx.token, payload: ctx.task.payload, checkpoint: ctx.task.checkpoint, attempts: ctx.task.attempts, ctx, startedAt: performance.now(), overlapped: runs.some((r) => !r.ended), ended: false };
      runs.push(run);
      await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve())));
      // Where it got to, on its way out: refused once the token has moved on.
      run.stopReason = (ctx.signal.reason as { reason?: string } | undefined)?.reason;
      run.stopCheckpoint = await ctx.checkpoint({ cursor: 'on the way out' }).then(
        () => 'stored',
        (error: unknown) => (error as { reason?: string }).reason ?? String(error),
      );
      // The first run is slow to stop: the test says when it returns.
      if (runs[0] === run) await firstHeld;
      run.ended = true;
    };
    const workers = [worker('a', storeFor(), { poll: handler('a') }, { periodMs }), worker('b', storeFor(), { poll: handler('b') }, { periodMs })];
    cleanup.push(async () => letFirstEnd());
    const events: string[] = [];
    for (const w of workers) for (const e of ['fenced', 'unfenced', 'zombie'] as const) w.on(e, () => events.push(`${w.snapshot().id} ${e}`));
    await Promise.all(workers.map((w) => w.start()));
    await waitFor('the task runs', () => runs.length === 1);
    const first = runs[0]!;
    await first.ctx.checkpoint({ cursor: 1 });

    const began = performance.now();
    const { task, updated } = await admin.update('mailbox', { payload: { box: 'new' } });
    expect(updated).toBe(true);
    expect(task).toMatchObject({ owner: first.node, token: first.token + 1, payload: { box: 'new' }, state: 'ready' });
    // The owner learns of it from its inbox (next heartbeat) and stops the run: well within
    // the 30 periods after which it would reconcile anyway.
    await waitFor('the old run to be told to stop', () => first.ctx.signal.aborted, 4 * periodMs);
    const stoppedMs = performance.now() - began;
    await waitFor('the old run to try its last checkpoint', () => first.stopCheckpoint !== undefined);
    expect({ events, stop: first.stopCheckpoint, why: first.stopReason }).toEqual({ events: [], stop: 'refused', why: 'superseded' });
    expect(first.ctx.isValid()).toBe(false);
    // While the old run's handler has not returned, no new run starts, here or elsewhere.
    const owner = workers.find((w) => w.snapshot().id === first.node)!;
    await beatsGo(workers, 3);
    expect(runs).toHaveLength(1);
    expect(owner.runningTasks()).toEqual([]);

    const released = performance.now();
    letFirstEnd();
    // At once, not at a later pass: the holding waits for the old run to be over, then starts.
    await waitFor('the task to run again', () => runs.length === 2, 1000);
    const second = runs[1]!;
    const restartMs = second.startedAt - released;
    expect({ node: second.node, token: second.token, payload: second.payload, checkpoint: second.checkpoint, attempts: second.attempts, overlapped: second.overlapped }).toEqual({
      node: first.node,
      token: first.token + 1,
      payload: { box: 'new' },
      checkpoint: { cursor: 1 }, // kept; the old run's last one was refused
      attempts: 0,
      overlapped: false,
    });
    await second.ctx.checkpoint({ cursor: 2 });
    expect(await store.getTask('mailbox')).toMatchObject({ owner: first.node, token: first.token + 1, payload: { box: 'new' }, checkpoint: { cursor: 2 } });
    // Nothing else starts it: not the other node, not a second restart.
    await beatsGo(workers, 3);
    expect(runs).toHaveLength(2);
    expect(events).toEqual([]);
    console.info(`payload update on ${_name} (P = ${periodMs} ms): old run told to stop ${Math.round(stoppedMs)} ms after the update; new run started ${restartMs.toFixed(1)} ms after the old handler returned`);
  });

  it('an update that races a takeover: the live node runs the new payload under a token past both writes, and the frozen owner\'s run is no longer valid', async () => {
    const storeFor = await backend();
    const admin = new TaskAdmin(storeFor());
    const runs: Array<{ node: string; token: number; payload: unknown; ctx: TaskContext }> = [];
    const handler = (node: string) => (ctx: TaskContext) => {
      runs.push({ node, token: ctx.token, payload: ctx.task.payload, ctx });
      return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    };
    const frozen = new PausableClock();
    cleanup.push(async () => frozen.resume());
    await worker('a', storeFor(), { poll: handler('a') }, { periodMs, clock: frozen }).start();
    await admin.add({ id: 'feed', type: 'poll', payload: { v: 1 } });
    await waitFor('a runs the task', () => runs.length === 1);
    const b = worker('b', storeFor(), { poll: handler('b') }, { periodMs });
    await b.start();
    await beatsGo([b], 2);
    // a freezes (no heartbeat, no reconcile); the update lands on its task, then b declares it dead and takes the task over.
    frozen.pause();
    const { task } = await admin.update('feed', { payload: { v: 2 } });
    expect(task).toMatchObject({ owner: 'a', token: runs[0]!.token + 1 });
    await waitFor('b to run the task', () => runs.some((r) => r.node === 'b'), 30 * periodMs);
    const taken = runs.filter((r) => r.node === 'b');
    expect(taken.map((r) => ({ token: r.token, payload: r.payload }))).toEqual([{ token: runs[0]!.token + 2, payload: { v: 2 } }]);
    expect(runs[0]!.ctx.isValid()).toBe(false);
  });

  it('the retry of an update that landed unheard (a lost reply) changes nothing but tells the owner, which restarts the task', async () => {
    const storeFor = await backend();
    const store = storeFor();
    const runs: Array<{ token: number; payload: unknown }> = [];
    const w = worker(
      'w',
      storeFor(),
      {
        poll: (ctx) => {
          runs.push({ token: ctx.token, payload: ctx.task.payload });
          return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        },
      },
      { periodMs, resyncTicks: 1000 },
    );
    await w.start();
    await new TaskAdmin(store).add({ id: 'tick', type: 'poll', payload: 1 });
    await waitFor('the task runs', () => runs.length === 1);
    // Past the reconciles a claim leaves owed, so that only a notification makes the owner look.
    await beatsGo([w], 4);
    // The write of an update whose caller never heard back: nobody told the owner.
    const landed = await store.updatePayload('tick', runs[0]!.token, { payload: 2, itemBytes: 200 });
    expect(landed.ok).toBe(true);
    await beatsGo([w], 3);
    expect(runs).toHaveLength(1);
    expect(await new TaskAdmin(store).update('tick', { payload: 2 })).toMatchObject({ updated: false, task: { token: runs[0]!.token + 1 } });
    await waitFor('the owner to restart the task', () => runs.length === 2, 4 * periodMs);
    expect(runs[1]).toEqual({ token: runs[0]!.token + 1, payload: 2 });
  });

  it('an unowned task is claimed with its new payload: the update tells the nodes to look at the pool', async () => {
    const storeFor = await backend();
    const store = storeFor();
    const runs: Array<{ token: number; payload: unknown }> = [];
    // Without a nudge, this worker looks at the pool only every 1,000 periods.
    const w = worker('w', storeFor(), { poll: (ctx) => void runs.push({ token: ctx.token, payload: ctx.task.payload }) }, { resyncTicks: 1000 });
    await w.start();
    await beatsGo([w], 2);
    // Created behind the workers' backs: nothing tells them to look.
    await store.createTask({ id: 'idle', type: 'poll', payload: { v: 1 } }, new Date().toISOString());
    await beatsGo([w], 4);
    expect(await store.getTask('idle')).toMatchObject({ owner: null, token: 0 });
    const { task } = await new TaskAdmin(store).update('idle', { payload: { v: 2 } });
    expect(task).toMatchObject({ owner: null, token: 1, payload: { v: 2 } });
    await waitFor('the task to be claimed and run', () => runs.length > 0, 2000);
    expect(runs[0]).toEqual({ token: 2, payload: { v: 2 } });
  });

  it('a done or failed task stays as it is: 409, nothing written, nothing run again', async () => {
    const storeFor = await backend();
    const store = storeFor();
    const admin = new TaskAdmin(store);
    const runs: string[] = [];
    const w = worker(
      'w',
      storeFor(),
      {
        report: (ctx) => {
          runs.push(ctx.task.id);
          if (ctx.task.id === 'broken') throw new Error('no such day');
          return { rows: 3 };
        },
      },
      { finite: true, maxAttempts: 1 },
    );
    await w.start();
    await admin.add({ id: 'daily', type: 'report', payload: { day: 1 } });
    await admin.add({ id: 'broken', type: 'report', payload: { day: 0 } });
    await waitFor('both finished', async () => (await store.getTask('daily'))?.state === 'done' && (await store.getTask('broken'))?.state === 'failed');
    const before = await store.getTasks(['daily', 'broken']);
    const done = await rejection(admin.update('daily', { payload: { day: 2 } }));
    expect(done).toBeInstanceOf(TaskConflictError);
    expect((done as Error).message).toBe('task "daily" is done; only ready tasks can be updated (its result stands: add a new task to run it with this payload)');
    const failed = await rejection(admin.update('broken', { payload: { day: 2 }, ifToken: before.get('broken')!.token }));
    expect(failed).toBeInstanceOf(TaskConflictError);
    expect((failed as Error).message).toMatch(/^task "broken" is failed; only ready tasks can be updated/);
    await beatsGo([w], 3);
    expect(await store.getTasks(['daily', 'broken'])).toEqual(before);
    expect(runs.sort()).toEqual(['broken', 'daily']);
  });
});

describe('payload update: compare-and-set and bad input, on DynamoDB Local', () => {
  async function admin() {
    const t = await freshTable('payload-admin');
    cleanup.push(() => t.drop());
    return { store: t.store(), admin: new TaskAdmin(t.store()) };
  }

  it('with ifToken, of two concurrent updates on the same token exactly one lands; the other is a 409 that names the token', async () => {
    const { store, admin: a } = await admin();
    await a.add({ id: 'cas', payload: 'v0' });
    const outcomes = await Promise.allSettled([a.update('cas', { payload: 'left', ifToken: 0 }), a.update('cas', { payload: 'right', ifToken: 0 })]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o) => o.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(TaskConflictError);
    expect((lost[0]!.reason as Error).message).toBe('task "cas" has token 1, not 0: it changed since you read it; read it again and retry');
    const winner = (won[0] as PromiseFulfilledResult<{ task: { payload: unknown } }>).value.task.payload;
    expect(await store.getTask('cas')).toMatchObject({ token: 1, payload: winner });
    // The current token goes through.
    expect(await a.update('cas', { payload: 'v2', ifToken: 1 })).toMatchObject({ updated: true, task: { token: 2, payload: 'v2' } });
  });

  it('without ifToken, concurrent updates all land, one after the other (the last writer wins); the same payload again changes nothing', async () => {
    const { store, admin: a } = await admin();
    await a.add({ id: 'lww', payload: 'v0' });
    const results = await Promise.all(['x', 'y', 'z'].map((payload) => a.update('lww', { payload })));
    expect(results.map((r) => r.updated)).toEqual([true, true, true]);
    expect(results.map((r) => r.task.token).sort()).toEqual([1, 2, 3]);
    const last = results.find((r) => r.task.token === 3)!.task.payload;
    expect(await store.getTask('lww')).toMatchObject({ token: 3, payload: last });
    // Idempotent: a retried request restarts nothing.
    expect(await a.update('lww', { payload: last })).toMatchObject({ updated: false, task: { token: 3 } });
    expect((await store.getTask('lww'))?.token).toBe(3);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const { store, admin: a } = await admin();
    await a.add({ id: 'kept', payload: { v: 1 } });
    const before = await store.getTask('kept');
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    const cases: Array<[unknown, unknown, new (...args: never[]) => Error, RegExp]> = [
      ['kept', {}, InvalidInputError, /^payload is required: the new payload, as JSON$/],
      ['kept', { payload: 10n }, InvalidInputError, /^payload must be JSON$/],
      ['kept', { payload: cycle }, InvalidInputError, /^payload must be JSON$/],
      ['kept', { payload: 1, ifToken: -1 }, InvalidInputError, /^ifToken must be a whole number >= 0 \(the token you read\)$/],
      ['kept', { payload: 1, ifToken: 1.5 }, InvalidInputError, /^ifToken must be a whole number >= 0/],
      ['kept', { payload: 1, ifToken: '0' }, InvalidInputError, /^ifToken must be a whole number >= 0/],
      ['kept', { payload: 1, token: 0 }, InvalidInputError, /^unknown field "token"$/],
      ['kept', 'not an object', InvalidInputError, /expected object/],
      ['kept', { payload: 'x'.repeat(limits.payloadBytes) }, PayloadTooLargeError, /^payload is 262146 bytes; the limit is 262144 bytes$/],
      ['', { payload: 1 }, InvalidInputError, /^id must not be empty$/],
      ['missing', { payload: 1 }, TaskNotFoundError, /^task "missing" does not exist$/],
    ];
    for (const [i, [id, input, type, message]] of cases.entries()) {
      const error = await rejection(a.update(id, input));
      expect(error, `case ${i}`).toBeInstanceOf(type);
      expect((error as Error).message).toMatch(message);
    }
    expect(await store.getTask('kept')).toEqual(before);
    expect(await store.getTask('missing')).toBeUndefined();
  });
});

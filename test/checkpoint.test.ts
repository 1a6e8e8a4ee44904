import { afterEach, describe, expect, it } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { CheckpointError } from '../lib/checkpoint.js';
import type { Clock } from '../lib/clock.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { limits } from '../lib/store/items.js';
import { MemoryStore } from '../lib/store/memory-store.js';
import type { Store } from '../lib/store/store.js';
import type { TaskContext, TaskHandler } from '../lib/tasks.js';
import { Worker } from '../lib/worker.js';
import { fastSettings, waitFor } from './support/cluster.js';
import { freshTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';
import { PausableClock } from './support/pausable-clock.js';

/**
 * `ctx.checkpoint`: a task's state handed from one run to the next, written only while the
 * task is the run's own. Real workers, on DynamoDB Local and on the in-memory store.
 */
let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
});

/** A store for each worker of one test: its own client on DynamoDB Local, or one shared MemoryStore. */
const backends: Array<[string, () => Promise<() => Store>]> = [
  [
    'DynamoDB Local',
    async () => {
      const t = await freshTable('checkpoint');
      cleanup.push(() => t.drop());
      return () => t.store({ requestTimeoutMs: 1000 });
    },
  ],
  [
    'MemoryStore',
    async () => {
      const store = new MemoryStore();
      return () => store;
    },
  ],
];

function worker(id: string, store: Store, type: string, handler: TaskHandler, options: { clock?: Clock; finite?: boolean } = {}): Worker {
  const w = new Worker({ doorbellHost: '127.0.0.1', ...fastSettings, retryBaseMs: 20, nodeId: id, store, ...(options.clock ? { clock: options.clock } : {}) });
  w.handle(type, handler, options.finite ? { mode: 'finite' } : {});
  cleanup.push(() => w.kill());
  return w;
}

async function addTask(store: Store, id: string, type: string): Promise<void> {
  await store.createTask({ id, type, payload: null }, new Date().toISOString());
  await store.bumpCluster('tasks');
}

/** A long-running handler that hands each run's context to the test and runs until stopped. */
function runsOf(): { runs: Array<{ node: string; ctx: TaskContext }>; handler: (node: string) => TaskHandler } {
  const runs: Array<{ node: string; ctx: TaskContext }> = [];
  const handler = (node: string) => (ctx: TaskContext) => {
    runs.push({ node, ctx });
    return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
  };
  return { runs, handler };
}

const rejection = (p: Promise<unknown>) => p.then(() => undefined, (error: unknown) => error);

describe.each(backends)('ctx.checkpoint on %s', (_name, backend) => {
  it("refuses a former owner's checkpoint after a takeover, which stops its run; the new owner sees the last accepted one", async () => {
    const storeFor = await backend();
    const store = storeFor();
    await addTask(store, 'poll', 'poll');
    const { runs, handler } = runsOf();
    const frozen = new PausableClock();
    cleanup.push(async () => frozen.resume());
    const a = worker('a', storeFor(), 'poll', handler('a'), { clock: frozen });
    const ended: string[] = [];
    a.on('task-ended', ({ outcome }) => ended.push(outcome));
    await a.start();
    await waitFor('a runs the task', () => runs.length === 1);
    const former = runs[0]!.ctx;
    await former.checkpoint({ cursor: 1 });
    await former.checkpoint({ cursor: 2 });
    await worker('b', storeFor(), 'poll', handler('b')).start();
    // a freezes (no timer fires: no heartbeat, no self-fencing); b declares it dead and takes the task.
    frozen.pause();
    await waitFor('b runs the task', () => runs.some((r) => r.node === 'b'));
    const next = runs.find((r) => r.node === 'b')!.ctx;
    expect(next.token).toBeGreaterThan(former.token);
    expect(next.task.checkpoint).toEqual({ cursor: 2 });
    // The frozen former owner still believes it runs the task; its write is refused, and that stops it.
    expect(former.signal.aborted).toBe(false);
    const refused = await rejection(former.checkpoint({ cursor: 'stale' }));
    expect(refused).toBeInstanceOf(CheckpointError);
    expect(refused).toMatchObject({ reason: 'refused' });
    expect(former.signal.aborted).toBe(true);
    // Ended as no longer ours, so a (once it wakes) forgets the task instead of starting it again.
    await waitFor('the former run ended', () => ended.length === 1);
    expect(ended).toEqual(['lost']);
    expect((await store.getTask('poll'))?.checkpoint).toEqual({ cursor: 2 });
    await next.checkpoint({ cursor: 3 });
    expect(await new TaskAdmin(store).get('poll')).toMatchObject({ owner: 'b', token: next.token, checkpoint: { cursor: 3 } });
  });

  it('a retry after the handler threw starts from its own checkpoint, and the result goes beside it', async () => {
    const storeFor = await backend();
    const store = storeFor();
    await addTask(store, 'report', 'report');
    const seen: Array<{ attempts: number; checkpoint: unknown }> = [];
    const handler = async (ctx: TaskContext<null, { page: number }>) => {
      seen.push({ attempts: ctx.task.attempts, checkpoint: ctx.task.checkpoint });
      if (ctx.task.attempts === 0) {
        await ctx.checkpoint({ page: 4 });
        throw new Error('crashed on page 5');
      }
      return { pages: ctx.task.checkpoint!.page + 1 };
    };
    await worker('w', storeFor(), 'report', handler as TaskHandler, { finite: true }).start();
    await waitFor('report done', async () => (await store.getTask('report'))?.state === 'done');
    expect(seen).toEqual([
      { attempts: 0, checkpoint: undefined },
      { attempts: 1, checkpoint: { page: 4 } },
    ]);
    expect(await store.getTask('report')).toMatchObject({ state: 'done', result: { pages: 5 }, checkpoint: { page: 4 }, attempts: 1 });
  });

  it('a run started again after its node fenced itself starts from the last checkpoint', async () => {
    const storeFor = await backend();
    await addTask(storeFor(), 'poll', 'poll');
    const { runs, handler } = runsOf();
    const clock = new PausableClock();
    cleanup.push(async () => clock.resume());
    const w = worker('w', storeFor(), 'poll', handler('w'), { clock });
    const events: string[] = [];
    for (const e of ['fenced', 'unfenced'] as const) w.on(e, () => events.push(e));
    await w.start();
    await waitFor('the task runs', () => runs.length === 1);
    await runs[0]!.ctx.checkpoint({ cursor: 5 });
    // Frozen past its lease (alone, nobody declares it dead): on waking it fences, beats, and starts the task again.
    clock.pause();
    await waitFor('the lease ran out', () => !runs[0]!.ctx.isValid());
    clock.resume();
    await waitFor('the run started again', () => runs.length === 2);
    expect(events).toEqual(['fenced', 'unfenced']);
    expect(runs[1]!.ctx.token).toBe(runs[0]!.ctx.token);
    expect(runs[1]!.ctx.task.checkpoint).toEqual({ cursor: 5 });
  });

  it('refuses a state that is not JSON or over the limit with a typed error, writes nothing and keeps the run going', async () => {
    const storeFor = await backend();
    const store = storeFor();
    await addTask(store, 'poll', 'poll');
    const { runs, handler } = runsOf();
    await worker('w', storeFor(), 'poll', handler('w')).start();
    await waitFor('the task runs', () => runs.length === 1);
    const { ctx } = runs[0]!;
    await ctx.checkpoint({ cursor: 'kept' });
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    const bad: Array<[unknown, string]> = [
      [{ cursor: 10n }, 'not-json'],
      [cycle, 'not-json'],
      [undefined, 'not-json'],
      [() => 1, 'not-json'],
      // One byte over: the JSON text of a string is the string and two quotes.
      ['x'.repeat(limits.checkpointBytes - 1), 'too-large'],
      // The limit is in UTF-8 bytes, not characters.
      ['é'.repeat(limits.checkpointBytes / 2), 'too-large'],
    ];
    for (const [state, reason] of bad) {
      const error = await rejection(ctx.checkpoint(state));
      expect(error).toBeInstanceOf(CheckpointError);
      expect(error).toMatchObject({ reason });
    }
    expect((await store.getTask('poll'))?.checkpoint).toEqual({ cursor: 'kept' });
    expect(ctx.signal.aborted).toBe(false);
    // Exactly at the limit fits, on DynamoDB as in memory.
    const largest = 'x'.repeat(limits.checkpointBytes - 2);
    await ctx.checkpoint(largest);
    expect((await store.getTask('poll'))?.checkpoint).toBe(largest);
  });
});

describe('ctx.checkpoint when the store fails', () => {
  async function behindProxy() {
    const t = await freshTable('checkpoint-faults');
    cleanup.push(() => t.drop());
    const proxy = new FaultProxy(t.endpoint);
    await proxy.start();
    cleanup.push(() => proxy.close());
    const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs: 1000 });
    cleanup.push(async () => client.destroy());
    const store = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs: 1000, retry: { attempts: 3, baseMs: 5, capMs: 20 } });
    await addTask(t.store(), 'poll', 'poll');
    const { runs, handler } = runsOf();
    await worker('w', store, 'poll', handler('w')).start();
    await waitFor('the task runs', () => runs.length === 1);
    return { t, proxy, ctx: runs[0]!.ctx };
  }
  const isCheckpoint = (body: string) => body.includes('"checkpoint"');

  it('sends a checkpoint whose outcome is unknown again (same token, same state) until it is confirmed', async () => {
    const { t, proxy, ctx } = await behindProxy();
    // The first attempt lands but its reply is lost; the store's own retries then fail, and it gives up (AmbiguousWriteError).
    for (const fault of ['drop-reply', 'error500', 'error500'] as const) proxy.inject(fault, 'UpdateItem', isCheckpoint);
    await ctx.checkpoint({ cursor: 7 });
    expect(proxy.stats).toMatchObject({ droppedReplies: 1, errors500: 2 });
    expect((await t.store().getTask('poll'))?.checkpoint).toEqual({ cursor: 7 });
    expect(ctx.signal.aborted).toBe(false);
  });

  it('rejects as unconfirmed when the store keeps failing, without stopping the run', async () => {
    const { t, proxy, ctx } = await behindProxy();
    for (let i = 0; i < 12; i++) proxy.inject('error500', 'UpdateItem', isCheckpoint);
    const error = await rejection(ctx.checkpoint({ cursor: 8 }));
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error).toMatchObject({ reason: 'unconfirmed' });
    expect(ctx.signal.aborted).toBe(false);
    expect((await t.store().getTask('poll'))?.checkpoint).toBeUndefined();
    await ctx.checkpoint({ cursor: 9 });
    expect((await t.store().getTask('poll'))?.checkpoint).toEqual({ cursor: 9 });
  });
});

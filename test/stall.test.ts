import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore, LateReplyError } from '../lib/store/dynamo-store.js';
import { StoreUnavailableError } from '../lib/store/store.js';
import type { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';

/**
 * A worker whose handler blocks the event loop, as CPU-bound task code does (parsing a large
 * batch, compressing, Fargate's CPU throttling at its smallest size). The heartbeat must come
 * through: blocked for 300 ms of every second, at default settings (P = 1 s, d = 200 ms), a
 * node beats late but never fails a beat, is never fenced and never declared dead.
 */
const bin = join(import.meta.dirname, '..', 'bin', 'keeper.js');
const dir = mkdtempSync(join(tmpdir(), 'keeper-stall-'));
writeFileSync(
  join(dir, 'busy.mjs'),
  `export default {
  busy: async (ctx) => {
    while (!ctx.signal.aborted) {
      const start = Date.now();
      while (Date.now() - start < 300) {} // the stall: nothing else runs meanwhile
      process.stderr.write(JSON.stringify({ msg: 'stalled 300 ms' }) + '\\n');
      // 700 ms on average, never in step with the heartbeat: every phase of a period is hit.
      await new Promise((resolve) => setTimeout(resolve, 400 + Math.random() * 600));
    }
  },
};
`,
);

let table: TestTable | undefined;
let proxy: FaultProxy | undefined;
const observers: Worker[] = [];
afterAll(async () => {
  await proxy?.close();
  await Promise.all(observers.map((w) => w.kill()));
  await table?.drop().catch(() => {});
});

describe('a handler that blocks the event loop', () => {
  it('300 ms of every second, for 60 s: no failed heartbeat, no fence, no declaration', async () => {
    const t = (table = await freshTable('stall'));
    const store = t.store();
    await store.createTask({ id: 'cpu-bound', type: 'busy', payload: null }, new Date().toISOString());
    await store.bumpCluster('tasks');
    const ledger = new Ledger();
    // Two watchers in this process, at default settings, with no handler for the busy task.
    for (const id of ['watcher-a', 'watcher-b']) observers.push(makeWorker({ id, store: t.store({ requestTimeoutMs: 200 }) }, ledger, {}));
    const declared: string[] = [];
    for (const w of observers) w.on('declared-dead', (e: { node?: string }) => declared.push(String(e.node)));
    await Promise.all(observers.map((w) => w.start()));

    // The latency of a request within a region: a stall that starts while one is in flight holds
    // up its reply, and that is what a timeout measured on a stalled event loop gets wrong.
    proxy = new FaultProxy(t.endpoint);
    proxy.rates = { delayMs: 25 };
    await proxy.start();
    const child = spawn(process.execPath, [bin, 'worker', '--table', t.table, '--node-id', 'busy', '--handlers', './busy.mjs'], {
      cwd: dir,
      env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: proxy.endpoint },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the busy task running on its node', async () => (await store.getTask('cpu-bound'))?.owner === 'busy', 20_000);
      const joined = await store.getNode('busy');
      const token = (await store.getTask('cpu-bound'))?.token;
      const stallsBefore = stderr.split('stalled 300 ms').length - 1;
      await new Promise((resolve) => setTimeout(resolve, 60_000));
      const stalls = stderr.split('stalled 300 ms').length - 1 - stallsBefore;
      const lines = stderr.split('\n').filter((l) => /"msg":"(heartbeat failed|lease expired|this incarnation was declared dead)/.test(l));
      expect(lines).toEqual([]);
      // ...and the node said why its beats came late, so that the cause can be found.
      expect(stderr).toMatch(/"msg":"event loop blocked longer than a request may last/);
      expect(declared).toEqual([]);
      expect(stalls).toBeGreaterThanOrEqual(55); // the handler really did block, about once a second
      const now = await store.getNode('busy');
      expect(now?.state).toBe('alive');
      expect(now?.inc).toBe(joined?.inc);
      expect((await store.getTask('cpu-bound'))?.token).toBe(token); // never moved
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 120_000);
});

describe('a reply held up by a blocked event loop', () => {
  it('counts as a timeout, read or write, although it came and no timer fired; a heartbeat\'s is used', async () => {
    const t = await freshTable('late');
    const requestTimeoutMs = 200;
    const client = createDynamoClient({ endpoint: t.endpoint, requestTimeoutMs });
    let blockMs = 0;
    // Task code that blocks the event loop just as a reply comes in: the reply is in hand, and
    // no timer can fire before it reaches the store.
    client.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        const start = performance.now();
        while (performance.now() - start < blockMs) {} // blocked
        return out;
      },
      { step: 'deserialize', name: 'blockedEventLoop' },
    );
    const store = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs, retry: { attempts: 2, baseMs: 1, capMs: 2 } });
    try {
      await store.createTask({ id: 'job', type: 'demo', payload: null }, 'now');
      await store.joinNode({ id: 'n', inc: 1, counter: 1, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 1, types: [], watch: {}, joinedAt: 'j' }, undefined);
      blockMs = requestTimeoutMs + 100;
      // A read that came after the deadline may be older than the bound allows: not used.
      const read = await store.getTask('job').then(
        () => 'used',
        (error: unknown) => error,
      );
      expect(read).toBeInstanceOf(StoreUnavailableError);
      expect(String(read)).toMatch(LateReplyError.name);
      // A write whose reply came late may have landed: it is resolved as one whose reply was
      // lost, and a create recognises its own item on the next attempt.
      expect(await store.createTask({ id: 'other', type: 'demo', payload: null }, 'now')).toBe('created');
      // A heartbeat's late reply is used: its next value is spaced from that reply (lease.test.ts).
      expect((await store.heartbeat({ id: 'n', inc: 1, joinedAt: 'j', counter: 2, taskCount: 0, capacity: 1, types: [], watch: {} })).ok).toBe(true);
      blockMs = requestTimeoutMs / 4;
      expect((await store.getTask('other'))?.id).toBe('other'); // within the deadline: used
    } finally {
      client.destroy();
      await t.drop().catch(() => {});
    }
  });
});

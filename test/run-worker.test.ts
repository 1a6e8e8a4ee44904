import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { ConfigError } from '../lib/config.js';
import { silentLogger } from '../lib/log.js';
import { runWorker } from '../lib/run-worker.js';
import { InvalidHandlersError } from '../lib/task-handlers.js';
import type { TaskContext } from '../lib/tasks.js';
import { EnvironmentError, readWorkerEnvironment } from '../lib/worker-environment.js';
import { waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * runWorker: a worker in a dozen lines. It reads the environment KeeperCluster sets, builds
 * the client and store itself, runs the handlers and leaves on a signal.
 */

let t: TestTable;
beforeAll(async () => {
  t = await freshTable('run-worker');
});
afterAll(async () => {
  await t.drop();
});

const envFor = (extra: Record<string, string> = {}) => ({ KEEPER_TABLE: t.table, AWS_ENDPOINT_URL_DYNAMODB: t.endpoint, KEEPER_PERIOD_MS: '250', ...extra });

describe('runWorker', () => {
  it('joins from the environment, runs both kinds of handler, and leaves on a signal', async () => {
    const admin = new TaskAdmin(t.store());
    await admin.add({ id: 'report-1', type: 'report', payload: { n: 2 } });
    await admin.add({ id: 'poll-1', type: 'poll', payload: null });
    const polling = new Set<string>();
    const worker = await runWorker({
      env: envFor({ KEEPER_NODE_ID: 'env-node', KEEPER_DOORBELL: 'off' }),
      handlers: {
        report: { handler: async (ctx: TaskContext<{ n: number }>) => ctx.task.payload.n * 21, mode: 'finite' },
        poll: async (ctx) => {
          polling.add(ctx.task.id);
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
          polling.delete(ctx.task.id);
        },
      },
      logger: silentLogger,
      // A signal of its own, so that the test process's SIGTERM handling is left alone; the
      // CLI test sends the real SIGTERM to `keeper worker`, which runs through runWorker too.
      signals: ['SIGUSR2'],
      exitAfterLeave: false,
    });
    expect(worker.id).toBe('env-node');
    expect(worker.config.periodMs).toBe(250);
    await waitFor('the finite task done', async () => (await admin.get('report-1')).state === 'done');
    expect((await admin.get('report-1')).result).toBe(42);
    await waitFor('the long-running task running', () => polling.has('poll-1'));

    const left = new Promise<{ handedOver: number }>((resolve) => worker.once('left', resolve));
    process.kill(process.pid, 'SIGUSR2');
    await left;
    expect(polling.size).toBe(0);
    expect((await t.store().getNode('env-node'))?.state).toBe('left');
    expect((await admin.get('poll-1')).owner).toBeNull();
    expect(process.listenerCount('SIGUSR2')).toBe(0);
  });

  it('on ECS with awsvpc networking, publishes the task\'s own address (task metadata endpoint) for its doorbell', async () => {
    const metadata = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // A container's metadata, abridged: its task's ENI address is the one peers reach.
      res.end(JSON.stringify({ Name: 'worker', Networks: [{ NetworkMode: 'awsvpc', IPv4Addresses: ['127.0.0.9'] }] }));
    });
    await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
    const { port } = metadata.address() as AddressInfo;
    try {
      const worker = await runWorker({
        env: envFor({ KEEPER_NODE_ID: 'ecs-node', ECS_CONTAINER_METADATA_URI_V4: `http://127.0.0.1:${port}/v4/abc` }),
        handlers: { x: () => {} },
        logger: silentLogger,
        signals: false,
      });
      try {
        await waitFor('the node item published', async () => (await t.store().getNode('ecs-node'))?.bell !== undefined);
        expect((await t.store().getNode('ecs-node'))?.bell).toMatch(/^127\.0\.0\.9:\d+$/);
      } finally {
        await worker.stop();
      }
    } finally {
      metadata.close();
    }
  });

  it('options win over the environment', async () => {
    const worker = await runWorker({ env: envFor({ KEEPER_PERIOD_MS: '400' }), periodMs: 300, nodeId: 'opt-node', doorbell: false, handlers: { x: () => {} }, logger: silentLogger, signals: false });
    expect(worker.config.periodMs).toBe(300);
    await worker.stop();
  });

  const refusals: Array<[string, () => Parameters<typeof runWorker>[0], new (...a: never[]) => Error, RegExp]> = [
    ['no table', () => ({ env: {}, handlers: { x: () => {} } }), EnvironmentError, /no table: set KEEPER_TABLE/],
    ['a malformed number', () => ({ env: envFor({ KEEPER_PERIOD_MS: 'soon' }), handlers: { x: () => {} } }), EnvironmentError, /KEEPER_PERIOD_MS must be a number, got "soon"/],
    ['unsafe settings', () => ({ env: envFor({ KEEPER_STALE_TICKS: '2' }), handlers: { x: () => {} } }), ConfigError, /staleTicks 2 is too small/],
    ['no handlers', () => ({ env: envFor(), handlers: {} }), InvalidHandlersError, /has no handlers/],
    ['a handler that is not a function', () => ({ env: envFor(), handlers: { x: 'run' as never } }), InvalidHandlersError, /"x" must be a function or \{ handler, mode, maxAttempts \}, got a string/],
    ['an unknown mode', () => ({ env: envFor(), handlers: { x: { handler: () => {}, mode: 'once' as never } } }), InvalidHandlersError, /mode "once"; use "long-running" or "finite"/],
  ];
  it.each(refusals)('refuses %s before anything starts', async (_name, options, type, message) => {
    const before = process.listenerCount('SIGTERM');
    const run = runWorker({ ...options(), nodeId: 'refused', logger: silentLogger });
    await expect(run).rejects.toThrow(type);
    await expect(run).rejects.toThrow(message);
    expect(process.listenerCount('SIGTERM')).toBe(before);
    expect(await t.store().getNode('refused')).toBeUndefined();
  });
});

describe('the worker environment', () => {
  it('reads every documented variable', () => {
    expect(
      readWorkerEnvironment({
        KEEPER_TABLE: 'tbl',
        KEEPER_PERIOD_MS: '500',
        KEEPER_STALE_TICKS: '5',
        KEEPER_DRIFT_BOUND: '1.1',
        KEEPER_FENCE_MS: '900',
        KEEPER_CAPACITY: '20',
        KEEPER_INBOX_POLL_MS: '100',
        KEEPER_DOORBELL_PORT: '7070',
        KEEPER_DOORBELL_HOST: '10.0.0.1',
        KEEPER_DOORBELL: 'off',
        KEEPER_NODE_ID: 'n1',
        KEEPER_APP_VERSION: '2026.12.03-4',
        KEEPER_METRICS: 'emf',
        KEEPER_HANDLERS: '/app/handlers.js',
      }),
    ).toEqual({
      table: 'tbl',
      metrics: true,
      handlers: '/app/handlers.js',
      settings: { periodMs: 500, staleTicks: 5, driftBound: 1.1, fenceMs: 900, capacity: 20, inboxPollMs: 100, doorbellPort: 7070, doorbellHost: '10.0.0.1', doorbell: false, nodeId: 'n1', appVersion: '2026.12.03-4' },
    });
    expect(readWorkerEnvironment({ KEEPER_PERIOD_MS: '' })).toEqual({ settings: {} });
    expect(() => readWorkerEnvironment({ KEEPER_METRICS: 'prometheus' })).toThrow(/KEEPER_METRICS must be emf or off, got "prometheus"/);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { healthCheckCommand } from '../lib/worker-health.js';
import { waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';

/**
 * A worker's health as its orchestrator sees it: `keeper worker` processes with
 * KEEPER_HEALTH_PORT set (as KeeperCluster sets it), reaching DynamoDB Local through a proxy
 * that can cut them off, asked by `keeper health` and by the very command KeeperCluster puts
 * in the container's health check. Each ask is a process of its own, as ECS runs it.
 */
const bin = join(import.meta.dirname, '..', 'bin', 'keeper.js');

let t: TestTable;
let children: ChildProcess[] = [];
let proxies: FaultProxy[] = [];

beforeAll(async () => {
  t = await freshTable('health');
});
afterAll(async () => {
  await t.drop();
});
afterEach(async () => {
  for (const child of children) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  children = [];
  await Promise.all(proxies.map((p) => p.close()));
  proxies = [];
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs a command to its end without blocking this process (the proxy lives here). */
function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const keeperHealth = (port: number, timeoutMs?: number) => run(process.execPath, [bin, 'health', '--port', String(port), ...(timeoutMs ? ['--timeout-ms', String(timeoutMs)] : [])]);
/** KeeperCluster's container health check, as ECS runs it ("CMD", then the command). */
const ecsCheck = (port: number) => {
  const [, command, ...args] = healthCheckCommand(port);
  return run(command === 'node' ? process.execPath : command!, args);
};

async function startWorker(nodeId: string, options: { partitioned?: boolean } = {}) {
  const proxy = new FaultProxy(t.endpoint);
  proxies.push(proxy);
  await proxy.start();
  if (options.partitioned) proxy.partition();
  const port = await freePort();
  const child = spawn(process.execPath, [bin, 'worker', '--table', t.table, '--node-id', nodeId, '--period-ms', '1000', '--no-doorbell'], {
    env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: proxy.endpoint, KEEPER_HEALTH_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { proxy, port, child, exited };
}

const healthy = (nodeId: string) => new RegExp(`^healthy: node ${nodeId} \\(incarnation \\d+\\) has joined and holds a valid lease\\n$`);

describe('worker health (keeper health, and the container health check)', () => {
  it('is unhealthy until the node has joined, then healthy', async () => {
    const { proxy, port, child, exited } = await startWorker('h-join', { partitioned: true });
    // The endpoint is up before the join, which cannot happen while the table is out of reach.
    await waitFor('the worker to answer that it has not joined', async () => {
      const answer = await keeperHealth(port);
      return answer.code === 1 && answer.stdout === 'unhealthy: node h-join has not joined the cluster yet\n';
    });
    expect(await ecsCheck(port)).toMatchObject({ code: 1, stdout: 'unhealthy: node h-join has not joined the cluster yet\n' });
    expect(await t.store().getNode('h-join')).toBeUndefined();

    proxy.heal();
    await waitFor('healthy once joined', async () => (await keeperHealth(port)).code === 0, 30_000);
    expect(await t.store().getNode('h-join')).toMatchObject({ state: 'alive' });
    expect(await keeperHealth(port)).toMatchObject({ code: 0, stdout: expect.stringMatching(healthy('h-join')), stderr: '' });
    expect(await ecsCheck(port)).toMatchObject({ code: 0, stdout: expect.stringMatching(healthy('h-join')) });

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await keeperHealth(port)).toMatchObject({ code: 1, stdout: expect.stringMatching(/^unhealthy: no worker answers on 127\.0\.0\.1:\d+: nothing listens there/) });
  });

  it('is unhealthy while the lease is lost (heartbeats cut off), healthy again once it is renewed', async () => {
    const { proxy, port } = await startWorker('h-lease');
    await waitFor('healthy', async () => (await keeperHealth(port)).code === 0, 30_000);
    proxy.partition();
    await waitFor('unhealthy: the lease ran out', async () => {
      const answer = await keeperHealth(port);
      return answer.code === 1 && /^unhealthy: node h-lease \(incarnation \d+\) has no valid lease/.test(answer.stdout);
    });
    expect((await ecsCheck(port)).code).toBe(1);
    proxy.heal();
    await waitFor('healthy again', async () => (await keeperHealth(port)).code === 0, 30_000);
  });

  it('is unhealthy while the process hangs: a status nobody answers for is stale', async () => {
    const { port, child } = await startWorker('h-hang');
    await waitFor('healthy', async () => (await keeperHealth(port)).code === 0, 30_000);
    child.kill('SIGSTOP');
    expect(await keeperHealth(port, 500)).toMatchObject({ code: 1, stdout: expect.stringMatching(/^unhealthy: no answer from the worker on 127\.0\.0\.1:\d+ within 500 ms/) });
    expect(await ecsCheck(port)).toMatchObject({ code: 1, stdout: expect.stringMatching(/^unhealthy: no answer from the worker within \d+ ms/) });
    child.kill('SIGCONT');
    await waitFor('healthy again', async () => (await keeperHealth(port)).code === 0, 30_000);
  });
});

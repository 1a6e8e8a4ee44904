import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { attachMetrics, metricNames } from '../lib/metrics.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import type { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';
import { FaultProxy } from './support/fault-proxy.js';

/**
 * attachMetrics on real workers against DynamoDB Local: what Powertools writes to stdout is
 * captured and read back as CloudWatch would read it (EMF: `_aws` names the metrics, the
 * values sit at the top level, an array means several samples).
 */

interface Emf {
  _aws: { Timestamp: number; CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }> };
  [key: string]: unknown;
}

let lines: Emf[] = [];
let cleanup: Array<() => Promise<unknown>> = [];

beforeEach(() => {
  lines = [];
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    for (const line of String(chunk).split('\n')) {
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as Partial<Emf>;
      if (parsed._aws) lines.push(parsed as Emf);
    }
    return true;
  }) as typeof process.stdout.write);
});

afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
  cleanup = [];
  vi.restoreAllMocks();
});

/** Every sample of one metric across the captured EMF lines, with its unit. */
function samples(name: string): Array<{ value: number; unit: string; line: Emf }> {
  const out: Array<{ value: number; unit: string; line: Emf }> = [];
  for (const line of lines) {
    const definition = line._aws.CloudWatchMetrics[0]!.Metrics.find((m) => m.Name === name);
    if (!definition) continue;
    const raw = line[name];
    for (const value of Array.isArray(raw) ? raw : [raw]) out.push({ value: value as number, unit: definition.Unit, line });
  }
  return out;
}

const sum = (name: string) => samples(name).reduce((total, s) => total + s.value, 0);

async function table(): Promise<TestTable> {
  const t = await freshTable('metrics');
  cleanup.push(() => t.drop());
  return t;
}

function started(worker: Worker): Worker {
  cleanup.push(() => worker.kill());
  return worker;
}

async function addTasks(t: TestTable, count: number): Promise<void> {
  const admin = new TaskAdmin(t.store());
  for (let i = 0; i < count; i++) await admin.add({ id: `job-${i}`, type: 'demo' });
}

describe('attachMetrics', () => {
  it('publishes a detected failure: the node declared dead, the tasks taken over and how long the takeover took', async () => {
    const t = await table();
    const ledger = new Ledger();
    const a = started(makeWorker({ id: 'a', store: t.store() }, ledger));
    const b = started(makeWorker({ id: 'b', store: t.store() }, ledger));
    const detach = attachMetrics(a, { service: 'cluster-one', namespace: 'KeeperTest' });
    cleanup.push(async () => detach());
    await a.start();
    await b.start();
    await addTasks(t, 6);
    await waitFor('both nodes to run tasks', () => a.snapshot().tasks.length > 0 && b.snapshot().tasks.length > 0 && a.snapshot().tasks.length + b.snapshot().tasks.length === 6);
    const moved: number[] = [];
    a.on('takeover', (event) => moved.push(event.moved));

    await b.kill();
    await waitFor('a to take over every task', () => a.snapshot().tasks.length === 6);
    await waitFor('the takeover metrics', () => samples(metricNames.tasksTakenOver).length > 0);

    expect(sum(metricNames.nodeDeclaredDead)).toBe(1);
    // Rebalancing may move a task between the two up to the kill, so the event, not an
    // earlier count, says how many moved.
    expect(moved.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    expect(sum(metricNames.tasksTakenOver)).toBe(moved.reduce((x, y) => x + y, 0));
    const latency = samples(metricNames.takeoverLatency);
    expect(latency).toHaveLength(moved.length);
    expect(latency[0]!.unit).toBe('Milliseconds');
    expect(latency[0]!.value).toBeGreaterThanOrEqual(0);
    expect(latency[0]!.value).toBeLessThan(5000);
    // Published where the alarms look: the namespace and the one `service` dimension.
    const line = samples(metricNames.nodeDeclaredDead)[0]!.line;
    expect(line._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'KeeperTest', Dimensions: [['service']] });
    expect(line['service']).toBe('cluster-one');
    expect(line['node']).toBe('a');
    expect(sum(metricNames.nodeJoined)).toBe(1);
    ledger.expectSafe();
  });

  it('publishes heartbeat failures, self-fencing and being declared dead while alive during a partition', async () => {
    const t = await table();
    const proxy = new FaultProxy(t.endpoint);
    await proxy.start();
    cleanup.push(() => proxy.close());
    const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs: 50 });
    cleanup.push(async () => client.destroy());
    const cutOffStore = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs: 50, retry: { attempts: 1 } });

    const ledger = new Ledger();
    const cutOff = started(makeWorker({ id: 'cut-off', store: cutOffStore }, ledger));
    const peer = started(makeWorker({ id: 'peer', store: t.store() }, ledger));
    const detach = attachMetrics(cutOff, { service: 'cluster-two', intervalMs: 200 });
    cleanup.push(async () => detach());
    // Counted from the worker's own events: a cold DynamoDB Local can make a join slow
    // enough to fence once more, and each event must show up as exactly one sample.
    const events = { fenced: 0, zombie: 0 };
    cutOff.on('fenced', () => events.fenced++);
    cutOff.on('zombie', () => events.zombie++);
    const fenced = new Promise((resolve) => cutOff.once('fenced', resolve));
    const zombie = new Promise((resolve) => cutOff.once('zombie', resolve));
    await cutOff.start();
    await peer.start();
    await addTasks(t, 2);
    await waitFor('the cut-off node to run a task', () => cutOff.snapshot().tasks.length > 0);
    await waitFor('a heartbeat sample', () => sum(metricNames.heartbeats) > 0);

    proxy.partition();
    await fenced;
    const declared = new Promise((resolve) => peer.once('declared-dead', resolve));
    await declared;
    proxy.heal();
    await zombie;
    await waitFor('buffered heartbeat failures to go out', () => sum(metricNames.heartbeatFailures) >= 2);

    expect(events.fenced).toBeGreaterThanOrEqual(1);
    expect(sum(metricNames.selfFenced)).toBe(events.fenced);
    expect(samples(metricNames.selfFenced)[0]!.line['service']).toBe('cluster-two');
    expect(events.zombie).toBe(1);
    expect(sum(metricNames.declaredDeadWhileAlive)).toBe(1);
    // Attempts, not successes, so that failures / heartbeats is a rate.
    expect(sum(metricNames.heartbeats)).toBeGreaterThan(sum(metricNames.heartbeatFailures));
    ledger.expectSafe();
  });

  it('samples owned tasks from snapshot(), and a graceful leave publishes a last time and detaches', async () => {
    const t = await table();
    const ledger = new Ledger();
    const worker = started(makeWorker({ id: 'solo', store: t.store() }, ledger));
    attachMetrics(worker, { service: 'cluster-three', intervalMs: 150 });
    await worker.start();
    await addTasks(t, 3);
    await waitFor('three tasks to run', () => worker.snapshot().tasks.length === 3);
    await waitFor('a gauge sample of three owned tasks', () => samples(metricNames.ownedTasks).at(-1)?.value === 3);
    expect(samples(metricNames.ownedTasks).every((s) => s.unit === 'Count' && s.value >= 0 && s.value <= 3)).toBe(true);
    expect(sum(metricNames.taskRunsStarted)).toBe(3);

    await worker.stop();
    expect(sum(metricNames.nodeLeft)).toBe(1);
    const count = lines.length;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(lines.length).toBe(count); // the periodic timer is gone
    expect(worker.listenerCount('takeover')).toBe(0);
  });

  it('a failing metrics backend is reported and never reaches the worker', async () => {
    const t = await table();
    const errors: string[] = [];
    class BrokenMetrics extends Metrics {
      override publishStoredMetrics(): this {
        throw new Error('stdout is gone');
      }
    }
    const ledger = new Ledger();
    const worker = started(makeWorker({ id: 'robust', store: t.store() }, ledger));
    attachMetrics(worker, { metrics: new BrokenMetrics({ namespace: 'KeeperTest' }), intervalMs: 100, onError: (m) => errors.push(m) });
    await worker.start();
    await addTasks(t, 1);
    await waitFor('the task to run despite the failing metrics', () => worker.runningTasks().length === 1);
    // Reported each time, and the periodic publish keeps trying after a failure.
    await waitFor('repeated periodic failures', () => errors.filter((e) => e.startsWith('metrics: periodic publish')).length >= 2);
    expect(errors).toContain('metrics: joined failed: Error: stdout is gone');
    expect(errors).toContain('metrics: periodic publish failed: Error: stdout is gone');
    const counter = worker.snapshot().counter;
    await waitFor('the counter to keep advancing', () => worker.snapshot().counter >= counter + 2);
    expect(worker.snapshot().fenced).toBe(false);
  });

  it('refuses a non-positive interval before subscribing to anything', async () => {
    const t = await table();
    const worker = makeWorker({ id: 'x', store: t.store() }, new Ledger());
    expect(() => attachMetrics(worker, { intervalMs: 0 })).toThrow('intervalMs must be a positive number of milliseconds, got 0');
    expect(worker.listenerCount('joined')).toBe(0);
  });
});

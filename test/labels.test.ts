import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError, TaskAdmin } from '../lib/admin.js';
import type { KeeperOptions } from '../lib/config.js';
import { InvalidLabelError, parseLabelList, parseLabels } from '../lib/labels.js';
import { placeTasks, unplaceableReason, type Candidate } from '../lib/protocol/placement.js';
import { silentLogger } from '../lib/log.js';
import { runWorker } from '../lib/run-worker.js';
import type { Worker } from '../lib/worker.js';
import { ecsAvailabilityZone, EnvironmentError, readWorkerEnvironment } from '../lib/worker-environment.js';
import { fastSettings, Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * Node labels and task constraints (issue 16, item 2): the syntax, the environment and the ECS
 * zone, pure placement, then real workers on DynamoDB Local through claims, a takeover with
 * no node left that may run some tasks, a join that brings one back, and a leave.
 */
let tables: TestTable[] = [];
let workers: Worker[] = [];
let servers: Server[] = [];

afterEach(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  workers = [];
  await Promise.all(tables.map((t) => t.drop().catch(() => {})));
  tables = [];
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  servers = [];
});

async function table(): Promise<TestTable> {
  const t = await freshTable('labels');
  tables.push(t);
  return t;
}

function start(t: TestTable, ledger: Ledger, id: string, options: Partial<KeeperOptions> = {}): Worker {
  const worker = makeWorker({ id, store: t.store({ requestTimeoutMs: 1000 }), options }, ledger, fastSettings);
  workers.push(worker);
  return worker;
}

const node = (id: string, load: number, labels?: Record<string, string>): Candidate => ({ id, inc: 1, load, capacity: 10, types: ['demo'], ...(labels ? { labels } : {}) });

/** A task metadata endpoint that answers `/task` with `body` after `delayMs`. */
async function metadataEndpoint(body: unknown, delayMs = 0, status = 200): Promise<string> {
  const server = createServer((req, res) => {
    setTimeout(() => {
      res.statusCode = req.url === '/v4/abc/task' ? status : 404;
      res.end(JSON.stringify(body));
    }, delayMs);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v4/abc`;
}

describe('labels: syntax, environment and the ECS zone', () => {
  it('parses key=value labels and refuses malformed ones with one line naming the source', () => {
    expect(parseLabels(['zone=eu-west-1a', 'disk=ssd'], '--label')).toEqual({ zone: 'eu-west-1a', disk: 'ssd' });
    expect(parseLabelList('zone=a, disk=ssd,', 'KEEPER_LABELS')).toEqual({ zone: 'a', disk: 'ssd' });
    for (const [bad, message] of [
      ['zone', /--label: "zone" is not key=value/],
      ['=a', /a label key is/],
      ['zone=', /a label value is/],
      ['zo ne=a', /a label key is/],
      ['zone=a b', /a label value is/],
    ] as const) {
      expect(() => parseLabels([bad], '--label')).toThrow(message);
      expect(() => parseLabels([bad], '--label')).toThrow(InvalidLabelError);
    }
    expect(() => parseLabels(['zone=a', 'zone=b'], '--label')).toThrow('--label: zone is given twice (a and b)');
  });

  it('reads KEEPER_LABELS, and refuses a malformed one with an EnvironmentError', () => {
    expect(readWorkerEnvironment({ KEEPER_LABELS: 'zone=a,tier=gold' }).settings.labels).toEqual({ zone: 'a', tier: 'gold' });
    expect(readWorkerEnvironment({}).settings).not.toHaveProperty('labels');
    expect(() => readWorkerEnvironment({ KEEPER_LABELS: 'zone:a' })).toThrow(EnvironmentError);
    expect(() => readWorkerEnvironment({ KEEPER_LABELS: 'zone:a' })).toThrow('KEEPER_LABELS: "zone:a" is not key=value');
  });

  it('reads the availability zone from the ECS task metadata endpoint, and fails soft with a warning', async () => {
    expect(await ecsAvailabilityZone({})).toEqual({});
    expect(await ecsAvailabilityZone({ ECS_CONTAINER_METADATA_URI_V4: await metadataEndpoint({ AvailabilityZone: 'eu-west-1b' }) })).toEqual({ zone: 'eu-west-1b' });
    const slow = await ecsAvailabilityZone({ ECS_CONTAINER_METADATA_URI_V4: await metadataEndpoint({ AvailabilityZone: 'x' }, 1000) }, 200);
    expect(slow.zone).toBeUndefined();
    expect(slow.warning).toMatch(/did not answer within 200 ms; starting without a zone label/);
    expect((await ecsAvailabilityZone({ ECS_CONTAINER_METADATA_URI_V4: await metadataEndpoint({}, 0, 500) })).warning).toMatch(/answered 500/);
    expect((await ecsAvailabilityZone({ ECS_CONTAINER_METADATA_URI_V4: await metadataEndpoint({ Cluster: 'c' }) })).warning).toMatch(/no usable AvailabilityZone/);
    expect((await ecsAvailabilityZone({ ECS_CONTAINER_METADATA_URI_V4: 'http://127.0.0.1:1/v4' })).warning).toMatch(/could not be read/);
  });
});

describe('runWorker and the ECS zone', () => {
  it('publishes the ECS availability zone as the zone label, keeps a zone given, and starts without one (with a warning) if the endpoint fails', async () => {
    const t = await table();
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
    const base = { store: t.store(), doorbell: false, handlers: { demo: () => {} }, signals: false as const, healthPort: false as const, periodMs: 250 };
    const onEcs = await metadataEndpoint({ AvailabilityZone: 'eu-west-1c' });
    const zoned = await runWorker({ ...base, nodeId: 'ecs-1', logger, env: { ECS_CONTAINER_METADATA_URI_V4: onEcs, KEEPER_LABELS: 'tier=gold' } });
    workers.push(zoned);
    expect((await t.store().getNode('ecs-1'))?.labels).toEqual({ tier: 'gold', zone: 'eu-west-1c' });
    const given = await runWorker({ ...base, nodeId: 'ecs-2', logger, labels: { zone: 'mine' }, env: { ECS_CONTAINER_METADATA_URI_V4: onEcs } });
    workers.push(given);
    expect((await t.store().getNode('ecs-2'))?.labels).toEqual({ zone: 'mine' });
    const aboutZone = () => warnings.filter((w) => w.includes('zone'));
    expect(aboutZone()).toEqual([]);
    const broken = await runWorker({ ...base, nodeId: 'ecs-3', logger, env: { ECS_CONTAINER_METADATA_URI_V4: await metadataEndpoint({}, 0, 500) } });
    workers.push(broken);
    expect((await t.store().getNode('ecs-3'))?.labels).toBeUndefined();
    expect(aboutZone()).toEqual([expect.stringMatching(/answered 500; starting without a zone label/)]);
  });
});

describe('placement with labels (pure)', () => {
  it('places a task only on a node with every label it requires, however loaded the others are', () => {
    const { assigned, unplaced } = placeTasks([{ id: 't', type: 'demo', require: { zone: 'a', disk: 'ssd' } }], [node('light', 0, { zone: 'a' }), node('busy', 9, { zone: 'a', disk: 'ssd' })]);
    expect([...assigned.keys()]).toEqual(['busy']);
    expect(unplaced).toEqual([]);
  });

  it('prefers a node with the labels while it has room, and places the task elsewhere when none has', () => {
    const task = { id: 't', type: 'demo', prefer: { zone: 'b' } };
    expect([...placeTasks([task], [node('a1', 0, { zone: 'a' }), node('b1', 8, { zone: 'b' })]).assigned.keys()]).toEqual(['b1']);
    expect([...placeTasks([task], [node('a1', 0, { zone: 'a' }), node('b1', 10, { zone: 'b' })]).assigned.keys()]).toEqual(['a1']);
  });

  it('says which required label no live node has', () => {
    expect(unplaceableReason({ id: 't', type: 'demo', require: { zone: 'a' } }, [node('b1', 0, { zone: 'b' })])).toBe('needs zone=a: no live node has it');
    expect(unplaceableReason({ id: 't', type: 'demo', require: { zone: 'a', disk: 'ssd' } }, [node('x', 0, { zone: 'a' }), node('y', 0, { disk: 'ssd' })])).toBe(
      'needs zone=a, disk=ssd: no live node has them all',
    );
    expect(unplaceableReason({ id: 't', type: 'demo', require: { zone: 'a' }, weight: 11 }, [node('a1', 0, { zone: 'a' })])).toBe("weight 11 exceeds every node's capacity");
  });
});

describe('require and prefer in TaskAdmin', () => {
  it('refuses malformed selectors with InvalidInputError, writing nothing; another selector under the same id is a conflict', async () => {
    const t = await table();
    const admin = new TaskAdmin(t.store());
    for (const require of ['zone=a', { zone: '' }, { 'bad key': 'a' }, { zone: 7 }, ['zone=a']]) {
      await expect(admin.add({ id: 'sel', require })).rejects.toThrow(InvalidInputError);
    }
    await expect(admin.add({ id: 'sel', prefer: { zone: 'a b' } })).rejects.toThrow(InvalidInputError);
    expect(await t.store().getTask('sel')).toBeUndefined();
    expect((await admin.add({ id: 'sel', require: { zone: 'a' }, prefer: { disk: 'ssd' } })).task).toMatchObject({ require: { zone: 'a' }, prefer: { disk: 'ssd' } });
    await expect(admin.add({ id: 'sel', require: { zone: 'b' }, prefer: { disk: 'ssd' } })).rejects.toThrow('already exists with require zone=a');
    // The owner index carries both, so that placing by them reads nothing more.
    expect((await t.store().unownedTasks(10)).find((x) => x.id === 'sel')).toMatchObject({ require: { zone: 'a' }, prefer: { disk: 'ssd' } });
  });
});

describe('constraints against DynamoDB Local', () => {
  it('claims, takeover, join and leave: a required label is never missing where a task runs; a task no live node may run waits in the pool, reported with the reason; preferences are honoured while a preferred node has room', async () => {
    const t = await table();
    const admin = new TaskAdmin(t.store());
    const needA = ['need-a-0', 'need-a-1', 'need-a-2'];
    const preferB = ['prefer-b-0', 'prefer-b-1', 'prefer-b-2', 'prefer-b-3'];
    const plain = ['plain-0', 'plain-1'];
    for (const id of needA) await admin.add({ id, require: { zone: 'a' } });
    for (const id of preferB) await admin.add({ id, prefer: { zone: 'b' } });
    for (const id of plain) await admin.add({ id });
    const all = [...needA, ...preferB, ...plain];
    const zoneOf = new Map<string, string>();
    const ledger = new Ledger();
    const spawn = (id: string, zone: string) => {
      zoneOf.set(id, zone);
      return start(t, ledger, id, { labels: { zone } });
    };
    // Every start is checked against the zone of its node, for the whole test.
    const wrong: string[] = [];
    const check = () => {
      for (const start of ledger.starts) if (needA.includes(start.task) && zoneOf.get(start.node) !== 'a') wrong.push(`${start.task} on ${start.node}`);
    };
    const a = spawn('a', 'a');
    const b1 = spawn('b1', 'b');
    const b2 = spawn('b2', 'b');
    await Promise.all([a, b1, b2].map((w) => w.start()));
    await waitFor('every task running', () => all.every((id) => ledger.runners(id).length === 1));
    check();
    expect(needA.every((id) => ledger.runners(id)[0] === 'a')).toBe(true);
    await waitFor('the preferring tasks in zone b', () => preferB.every((id) => zoneOf.get(ledger.runners(id)[0] ?? '') === 'b'));
    // The node publishes its labels.
    expect((await t.store().getNode('a'))?.labels).toEqual({ zone: 'a' });

    // The only node in zone a crashes: its zone-a tasks may run nowhere else and go back to the pool.
    const takeover = new Promise((resolve) => [b1, b2].forEach((w) => w.once('takeover', resolve)));
    await a.kill();
    await takeover;
    await waitFor('the zone-a tasks back in the pool', async () => {
      const free = (await t.store().unownedTasks(100)).map((x) => x.id);
      return needA.every((id) => free.includes(id));
    });
    const { unplaceable } = await admin.status();
    expect([...unplaceable].sort((x, y) => (x.id < y.id ? -1 : 1))).toEqual(needA.map((id) => ({ id, reason: 'needs zone=a: no live node has it' })));
    // A few periods more: nobody claims them.
    await waitFor('four more beats', async () => ((await t.store().getNode('b1'))?.counter ?? 0) >= 12);
    expect(needA.every((id) => ledger.runners(id).length === 0)).toBe(true);
    await waitFor('the rest running in zone b', () => [...preferB, ...plain].every((id) => zoneOf.get(ledger.runners(id)[0] ?? '') === 'b'));

    // A new node in zone a joins and claims them.
    const a2 = spawn('a2', 'a');
    await a2.start();
    await waitFor('the zone-a tasks running on a2', () => needA.every((id) => ledger.runners(id).join() === 'a2'));

    // b1 leaves: its tasks go to b2 (preferred, with room), none of the zone-a ones ever leave a2.
    await b1.stop();
    await waitFor('every task running again', () => all.every((id) => ledger.runners(id).length === 1));
    expect(preferB.every((id) => ledger.runners(id)[0] === 'b2')).toBe(true);
    expect(needA.every((id) => ledger.runners(id)[0] === 'a2')).toBe(true);
    check();
    expect(wrong).toEqual([]);
    ledger.expectSafe();
  });
});

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand, type CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { silentLogger } from '../lib/log.js';
import { runWorker } from '../lib/run-worker.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { checkTable, createTableInput, ensureTable, TableSchemaMismatchError, tableDifferences } from '../lib/store/table.js';

/**
 * A table made by another version of keeper (other keys, a missing index, the owner index's
 * old projection) is refused by `keeper init` and by workers, with what to do about each
 * difference, before any worker writes to it.
 */
const endpoint = () => inject('dynamoEndpoint');
const client = () => createDynamoClient({ endpoint: endpoint(), requestTimeoutMs: 5000 });
const bin = join(import.meta.dirname, '..', 'bin', 'keeper.js');
const made: string[] = [];

/** A table like keeper's, changed by `change`. */
async function tableWith(name: string, change: (input: CreateTableCommandInput) => void): Promise<string> {
  const table = `schema-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const input = createTableInput(table);
  change(input);
  const c = client();
  await c.send(new CreateTableCommand(input));
  c.destroy();
  made.push(table);
  return table;
}

let oldProjection: string;
let noMembers: string;
let good: string;
beforeAll(async () => {
  // The owner index as it was before it projected task heads only.
  oldProjection = await tableWith('old-projection', (input) => {
    input.GlobalSecondaryIndexes!.find((i) => i.IndexName === 'byOwner')!.Projection = { ProjectionType: 'ALL' };
  });
  noMembers = await tableWith('no-members', (input) => {
    input.GlobalSecondaryIndexes = input.GlobalSecondaryIndexes!.filter((i) => i.IndexName !== 'members');
    input.AttributeDefinitions = input.AttributeDefinitions!.filter((a) => a.AttributeName !== 'member' && a.AttributeName !== 'ring');
  });
  good = `schema-good-${Math.random().toString(36).slice(2, 8)}`;
  const c = client();
  await ensureTable(c, good);
  c.destroy();
  made.push(good);
});
afterAll(async () => {
  const c = client();
  for (const table of made) await c.send(new DeleteTableCommand({ TableName: table }));
  c.destroy();
});

describe('the table check', () => {
  it("finds no difference in a table `keeper init` made, and each difference in others", async () => {
    const c = client();
    await expect(checkTable(c, good)).resolves.toBeUndefined();
    const error = await checkTable(c, oldProjection).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TableSchemaMismatchError);
    expect((error as TableSchemaMismatchError).differences).toEqual([
      expect.stringMatching(/^index byOwner projects ALL, keeper needs INCLUDE .*: delete index byOwner and create it again as `keeper init` would/),
    ]);
    const missing = (await checkTable(c, noMembers).catch((e: unknown) => e)) as TableSchemaMismatchError;
    expect(missing.differences).toEqual([expect.stringMatching(/^index members is missing: create it \(keys member\/ring\)/)]);
    c.destroy();
  });

  it('reports wrong keys, index keys and key types, one sentence each', async () => {
    const c = client();
    const { Table } = await c.send(new DescribeTableCommand({ TableName: good }));
    c.destroy();
    const changed = structuredClone(Table!);
    changed.KeySchema = [{ AttributeName: 'id', KeyType: 'HASH' }];
    changed.GlobalSecondaryIndexes!.find((i) => i.IndexName === 'members')!.KeySchema = [{ AttributeName: 'member', KeyType: 'HASH' }];
    changed.AttributeDefinitions!.find((a) => a.AttributeName === 'slot')!.AttributeType = 'N';
    expect(tableDifferences(changed)).toEqual([
      expect.stringMatching(/^its keys are id\/-, keeper needs pk\/sk: create a new table/),
      expect.stringMatching(/^index members has keys member\/-, keeper needs member\/ring: delete index members/),
      expect.stringMatching(/^key attribute slot has type N, keeper needs S/),
    ]);
  });
});

describe('a mismatched table is refused', () => {
  const keeper = (args: string[]) => {
    const out = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: endpoint() }, timeout: 30_000 });
    return { code: out.status, stdout: out.stdout, stderr: out.stderr };
  };

  it('by keeper init: exit 1, one line naming each difference and what to do', () => {
    const { code, stdout, stderr } = keeper(['init', '--table', oldProjection]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(new RegExp(`^keeper: table "${oldProjection}" does not match the schema this version of keeper expects: \\(1\\) index byOwner projects ALL`));
    expect(keeper(['init', '--table', good])).toMatchObject({ code: 0, stdout: `table ${good} already exists and matches the schema\n` });
  });

  it('by keeper worker, before it joins: exit 1, the same line, no node item', async () => {
    const { code, stderr } = keeper(['worker', '--table', noMembers, '--node-id', 'mismatch']);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/does not match the schema this version of keeper expects: \(1\) index members is missing/);
    const c = client();
    expect(await new DynamoStore({ client: documentClient(c), table: noMembers }).getNode('mismatch')).toBeUndefined();
    c.destroy();
  });

  it('and a matching one is not', async () => {
    const worker = await runWorker({ env: { KEEPER_TABLE: good, AWS_ENDPOINT_URL_DYNAMODB: endpoint() }, handlers: { x: () => {} }, nodeId: 'fine', doorbell: false, logger: silentLogger, signals: false });
    await worker.stop();
  });

  it('by runWorker', async () => {
    await expect(runWorker({ env: { KEEPER_TABLE: oldProjection, AWS_ENDPOINT_URL_DYNAMODB: endpoint() }, handlers: { x: () => {} }, logger: silentLogger, signals: false })).rejects.toThrow(
      TableSchemaMismatchError,
    );
  });
});

import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTableCommand, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDynamoClient } from '../lib/store/client.js';
import { waitFor } from './support/cluster.js';

/**
 * Adoption as a stranger would do it: pack this repository, install the tarball into a copy
 * of examples/reports-service (a user's project that imports only from the package), and
 * there typecheck and build, run the project's own tests, synthesize its CDK app offline,
 * and run two of its workers against DynamoDB Local until both of its task types have run.
 */
const repo = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'keeper-example-'));
const project = join(work, 'reports-service');
const endpoint = () => inject('dynamoEndpoint');
const awsEnv = () => ({ AWS_ENDPOINT_URL_DYNAMODB: endpoint(), AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' });

function run(command: string, args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): SpawnSyncReturns<string> {
  const out = spawnSync(command, args, {
    cwd: options.cwd ?? project,
    encoding: 'utf8',
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...options.env },
    timeout: options.timeoutMs ?? 180_000,
  });
  if (out.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${out.status}:\n${out.stdout}\n${out.stderr}`);
  return out;
}

let tarball: string;
beforeAll(() => {
  if (!existsSync(join(repo, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  // --ignore-scripts: dist/ is built already; `prepare` would rebuild it under the other tests.
  const packed = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repo }).stdout) as Array<{ filename: string }>;
  tarball = join(work, packed[0]!.filename);
  cpSync(join(repo, 'examples', 'reports-service'), project, { recursive: true, filter: (src) => !/[/\\](node_modules|dist|cdk\.out)$/.test(src) });
  // The published package in place of the registry's; everything else from the registry (or npm's cache).
  run('npm', ['install', '--prefer-offline', tarball], { timeoutMs: 300_000 });
}, 360_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('examples/reports-service, on the packed tarball', () => {
  it('installed only what a user needs', () => {
    const installed = join(project, 'node_modules', 'keeper');
    expect(readdirSync(installed).sort()).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'bin', 'dist', 'package.json']);
    expect(existsSync(join(installed, 'dist', 'functions', 'task-api', 'index.mjs'))).toBe(true);
  });

  it('typechecks and builds', () => {
    run('npx', ['tsc', '-p', 'tsconfig.json']);
    expect(existsSync(join(project, 'dist', 'src', 'worker.js'))).toBe(true);
  }, 120_000);

  it("passes the project's own tests (keeper/testing)", () => {
    const out = run('npx', ['vitest', 'run'], { env: { NO_COLOR: '1', FORCE_COLOR: '0' }, timeoutMs: 120_000 });
    expect(out.stdout).toMatch(/Tests\s+4 passed \(4\)/);
  }, 150_000);

  it('synthesizes its CDK app offline, with its own table granted to the workers', () => {
    const outdir = join(work, 'cdk.out');
    run('npx', ['cdk', 'synth', '--quiet', '--output', outdir], { env: { CDK_DISABLE_VERSION_CHECK: '1' }, timeoutMs: 150_000 });
    const template = JSON.parse(readFileSync(join(outdir, 'ReportsService.template.json'), 'utf8')) as { Resources: Record<string, { Type: string; Properties: any }> };
    const resources = Object.values(template.Resources);
    expect(resources.filter((r) => r.Type === 'AWS::DynamoDB::Table')).toHaveLength(2);
    expect(resources.filter((r) => r.Type === 'AWS::Lambda::Function').length).toBeGreaterThanOrEqual(6);
    const container = resources.find((r) => r.Type === 'AWS::ECS::TaskDefinition')!.Properties.ContainerDefinitions[0];
    expect((container.Environment as Array<{ Name: string }>).map((e) => e.Name)).toEqual(expect.arrayContaining(['KEEPER_TABLE', 'CHECKPOINT_TABLE']));
  }, 180_000);

  it('runs two of its workers against DynamoDB Local: both task types run, and both leave on SIGTERM', async () => {
    const table = `example-${Math.random().toString(36).slice(2, 8)}`;
    const checkpointTable = `${table}-checkpoints`;
    const keeper = (args: string[]) => run('node', [join(project, 'node_modules', 'keeper', 'bin', 'keeper.js'), ...args, '--table', table], { env: awsEnv(), timeoutMs: 30_000 });
    keeper(['init']);
    const client = createDynamoClient({ endpoint: endpoint(), requestTimeoutMs: 5000 });
    await client.send(
      new CreateTableCommand({ TableName: checkpointTable, BillingMode: 'PAY_PER_REQUEST', AttributeDefinitions: [{ AttributeName: 'feed', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'feed', KeyType: 'HASH' }] }),
    );
    const workers = ['ex-1', 'ex-2'].map((id) => {
      const child = spawn(process.execPath, ['dist/src/worker.js'], {
        cwd: project,
        env: { ...process.env, ...awsEnv(), KEEPER_TABLE: table, KEEPER_NODE_ID: id, KEEPER_PERIOD_MS: '250', KEEPER_DOORBELL_HOST: '127.0.0.1', CHECKPOINT_TABLE: checkpointTable },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let log = '';
      child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
      return { id, child, log: () => log, exited: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))) };
    });
    try {
      await waitFor('both workers running', () => workers.every((w) => w.log().includes('"msg":"worker running"')), 30_000);
      keeper(['task', 'add', 'feed-x', '--type', 'ingest', '--payload', '{"feed":"x","everyMs":50}']);
      keeper(['task', 'add', 'day-1', '--type', 'summarise', '--payload', '{"figures":[1,2,3,4]}']);
      await waitFor('the summary', () => JSON.parse(keeper(['task', 'ls', '--json']).stdout).some((t: { id: string; state: string }) => t.id === 'day-1' && t.state === 'done'), 30_000, 250);
      const tasks = JSON.parse(keeper(['task', 'ls', '--json']).stdout) as Array<{ id: string; result?: unknown; owner: string | null }>;
      expect(tasks.find((t) => t.id === 'day-1')!.result).toEqual({ count: 4, total: 10, mean: 2.5 });
      const position = async () => Number((await client.send(new GetItemCommand({ TableName: checkpointTable, Key: { feed: { S: 'x' } }, ConsistentRead: true }))).Item?.['position']?.N ?? 0);
      await waitFor('the feed ingested with fenced checkpoints', async () => (await position()) > 5, 30_000, 100);
      expect(['ex-1', 'ex-2']).toContain(tasks.find((t) => t.id === 'feed-x')!.owner);
    } finally {
      for (const w of workers) w.child.kill('SIGTERM');
      const codes = await Promise.all(workers.map((w) => w.exited));
      client.destroy();
      expect(codes, workers.map((w) => w.log()).join('\n')).toEqual([0, 0]);
    }
  }, 120_000);
});

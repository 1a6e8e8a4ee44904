import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TaskAdmin } from '../lib/admin.js';
import { ConfigError, failoverBoundMs, healthWindowMs, resolveConfig } from '../lib/config.js';
import { metricNames } from '../lib/metrics.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { createTableInput, tableSchema } from '../lib/store/table.js';
import { doorbellPort, healthPort, KeeperCluster, tableAccess, workerHealthCheck, type KeeperClusterProps } from '../lib/cdk/index.js';
import { healthCheckCommand } from '../lib/worker-health.js';
import { KeeperStack, repoRoot } from '../infra/stack.js';
import type { Worker } from '../lib/worker.js';
import { Ledger, makeWorker, waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * The synthesized CloudFormation of the demo stack, read with aws-cdk-lib/assertions. One
 * synth (with the prebuilt function bundles of dist/functions and the image only staged) serves
 * every assertion; the variants that test props skip bundling.
 */

type Resources = Record<string, { Type: string; Properties: Record<string, any>; DeletionPolicy?: string }>;

const cdkContext = (JSON.parse(readFileSync(join(repoRoot, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }).context;

let template: Template;
let resources: Resources;
let outdir: string;
let stack: KeeperStack;
let app: App;
let synthMs = 0;

beforeAll(() => {
  const started = performance.now();
  outdir = mkdtempSync(join(tmpdir(), 'keeper-synth-'));
  app = new App({ outdir, context: cdkContext });
  stack = new KeeperStack(app, 'Keeper');
  template = Template.fromStack(stack);
  resources = template.toJSON()['Resources'] as Resources;
  synthMs = performance.now() - started;
}, 120_000);

afterAll(() => rmSync(outdir, { recursive: true, force: true }));

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const tableRef = () => ofType('AWS::DynamoDB::Table')[0]![0];

/** A quick stack for the props tests: no bundling, no image staging. */
function quickStack(props: Partial<KeeperClusterProps>) {
  const quickApp = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
  const quick = new Stack(quickApp, 'Quick');
  const cluster = new KeeperCluster(quick, 'Keeper', { workerImage: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/worker:1'), minWorkers: 1, maxWorkers: 2, ...props });
  return { stack: quick, cluster };
}

describe('synth', () => {
  it('takes seconds, deploys the prebuilt function bundles and only stages the worker image', () => {
    expect(synthMs).toBeLessThan(60_000);
    const manifest = JSON.parse(readFileSync(join(outdir, 'Keeper.assets.json'), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
      dockerImages: Record<string, { source: { directory: string; platform?: string } }>;
    };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    const staged = join(outdir, images[0]!.source.directory);
    expect(images[0]!.source.platform).toBe('linux/amd64');
    // What the Dockerfile copies is there; what .dockerignore leaves out is not.
    expect(readdirSync(staged).sort()).toEqual(['.dockerignore', 'Dockerfile', 'bin', 'lib', 'package-lock.json', 'package.json', 'tsconfig.build.json', 'tsconfig.json']);
    expect(existsSync(join(staged, 'node_modules'))).toBe(false);
    const bundles = Object.values(manifest.files).filter((f) => f.source.packaging === 'zip');
    expect(bundles.length).toBeGreaterThanOrEqual(2);
    for (const bundle of bundles) expect(existsSync(join(outdir, bundle.source.path, 'index.mjs'))).toBe(true);
  });
});

describe('table', () => {
  it('has the keys and both indexes of tableSchema, exactly as `keeper init` creates them', () => {
    const input = createTableInput('any');
    const table = ofType('AWS::DynamoDB::Table')[0]![1].Properties;
    expect(table['KeySchema']).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    const byName = (list: Array<{ AttributeName: string }>) => [...list].sort((a, b) => a.AttributeName.localeCompare(b.AttributeName));
    expect(byName(table['AttributeDefinitions'])).toEqual(byName(input.AttributeDefinitions as Array<{ AttributeName: string }>));
    const indexes = (table['GlobalSecondaryIndexes'] as Array<Record<string, unknown>>).map(({ IndexName, KeySchema, Projection }) => ({ IndexName, KeySchema, Projection }));
    expect(indexes).toEqual(input.GlobalSecondaryIndexes);
    expect(indexes.map((i) => i.IndexName)).toEqual(['members', 'byOwner']);
    expect(tableSchema.indexes.map((i) => i.name)).toEqual(['members', 'byOwner']);
  });

  it('is on-demand, encrypted with KMS, recoverable to the second, and retained with deletion protection by default', () => {
    const [, table] = ofType('AWS::DynamoDB::Table')[0]!;
    expect(table.Properties).toMatchObject({
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      DeletionProtectionEnabled: true,
    });
    expect(table.DeletionPolicy).toBe('Retain');
  });

  it('is destroyed with the stack, without deletion protection, only when asked', () => {
    const quick = Template.fromStack(quickStack({ removalPolicy: RemovalPolicy.DESTROY }).stack);
    quick.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete', Properties: Match.objectLike({ DeletionProtectionEnabled: false }) });
    const kept = Template.fromStack(quickStack({}).stack);
    kept.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain', Properties: Match.objectLike({ DeletionProtectionEnabled: true }) });
  });
});

describe('workers', () => {
  it('run the image on Fargate with the table, the period and EMF metrics, logging to CloudWatch, with time to leave', () => {
    const [, taskDef] = ofType('AWS::ECS::TaskDefinition')[0]!;
    const container = taskDef.Properties['ContainerDefinitions'][0] as Record<string, any>;
    const env = Object.fromEntries((container['Environment'] as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(env).toMatchObject({
      KEEPER_TABLE: { Ref: tableRef() },
      KEEPER_PERIOD_MS: '1000',
      KEEPER_METRICS: 'emf',
      POWERTOOLS_SERVICE_NAME: { Ref: tableRef() },
      POWERTOOLS_METRICS_NAMESPACE: 'Keeper',
    });
    expect(container['StopTimeout']).toBe(120);
    expect(container['ReadonlyRootFilesystem']).toBe(true);
    expect(container['LogConfiguration']).toMatchObject({ LogDriver: 'awslogs', Options: { 'awslogs-group': { Ref: expect.any(String) } } });
    expect(taskDef.Properties).toMatchObject({ RequiresCompatibilities: ['FARGATE'], NetworkMode: 'awsvpc' });
  });

  it('publish the image they run as their application version, so that a deployment moves each task once, from an old worker to a new one', () => {
    const [, taskDef] = ofType('AWS::ECS::TaskDefinition')[0]!;
    const container = taskDef.Properties['ContainerDefinitions'][0] as Record<string, any>;
    const env = Object.fromEntries((container['Environment'] as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    // The asset's reference, its content hash in the tag: a new image, a new version.
    expect(env['KEEPER_APP_VERSION']).toEqual(container['Image']);
    expect(JSON.stringify(env['KEEPER_APP_VERSION'])).toMatch(/:[0-9a-f]{64}/);
    const given = quickStack({ appVersion: '2026.12.03-1' }).stack;
    const quickContainer = Template.fromStack(given).findResources('AWS::ECS::TaskDefinition');
    const quickEnv = (Object.values(quickContainer)[0]!['Properties']['ContainerDefinitions'][0]['Environment'] as Array<{ Name: string; Value: unknown }>);
    expect(quickEnv).toContainEqual({ Name: 'KEEPER_APP_VERSION', Value: '2026.12.03-1' });
  });

  it('report healthy to ECS only once joined with a valid lease (the container health check), so a deployment waits for new workers to join', () => {
    const [, taskDef] = ofType('AWS::ECS::TaskDefinition')[0]!;
    const container = taskDef.Properties['ContainerDefinitions'][0] as Record<string, any>;
    const env = Object.fromEntries((container['Environment'] as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(env['KEEPER_HEALTH_PORT']).toBe(String(healthPort));
    // The very command test/health.test.ts runs against worker processes.
    expect(container['HealthCheck']).toEqual({ Command: healthCheckCommand(healthPort), Interval: 5, Timeout: 5, Retries: 3, StartPeriod: 35 });
    const [kind, program, flag] = container['HealthCheck'].Command as string[];
    expect([kind, program, flag]).toEqual(['CMD', 'node', '-e']);
    // Unhealthy for longer than the failover bound before ECS replaces a worker: 3 checks 5 s apart > 7.55 s.
    expect(3 * 5 * 1000).toBeGreaterThan(failoverBoundMs(resolveConfig({ periodMs: 1000 })));
    // Port mappings stay the doorbell's: the health port is for the task's own localhost.
    expect(container['PortMappings']).toEqual([{ ContainerPort: doorbellPort, Protocol: 'udp' }]);
    // A longer period: checks no more often than a period, and still past the failover bound.
    const slow = workerHealthCheck(resolveConfig({ periodMs: 10_000 }));
    expect(slow.interval?.toSeconds()).toBe(10);
    expect((slow.retries ?? 0) * 10_000).toBeGreaterThan(failoverBoundMs(resolveConfig({ periodMs: 10_000 })));
    expect(slow.startPeriod?.toSeconds()).toBe(30 + Math.ceil(4 * 10 * 1.05));
    const quick = Template.fromStack(quickStack({ periodMs: 10_000 }).stack).toJSON()['Resources'] as Resources;
    const [, quickDef] = Object.entries(quick).find(([, r]) => r.Type === 'AWS::ECS::TaskDefinition')!;
    expect(quickDef.Properties['ContainerDefinitions'][0]['HealthCheck']).toMatchObject({ Interval: 10, Retries: slow.retries, StartPeriod: 72 });
  });

  it('let only each other ring their doorbells (UDP)', () => {
    const [, taskDef] = ofType('AWS::ECS::TaskDefinition')[0]!;
    const container = taskDef.Properties['ContainerDefinitions'][0] as Record<string, any>;
    const env = Object.fromEntries((container['Environment'] as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    expect(env['KEEPER_DOORBELL_PORT']).toBe(String(doorbellPort));
    expect(container['PortMappings']).toEqual([{ ContainerPort: doorbellPort, Protocol: 'udp' }]);
    const ingress = ofType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties as Record<string, any>);
    const udp = ingress.filter((rule) => rule['IpProtocol'] === 'udp');
    expect(udp).toHaveLength(1);
    expect(udp[0]).toMatchObject({ FromPort: doorbellPort, ToPort: doorbellPort });
    // From the workers' own security group, never from an address range.
    expect(udp[0]!['SourceSecurityGroupId']).toEqual(udp[0]!['GroupId']);
    expect(udp[0]!['CidrIp']).toBeUndefined();
  });

  it('run the handler module given as handlerModule (KEEPER_HANDLERS), and the image\'s own entry point without it', () => {
    const envOf = (t: Template) => {
      const [, taskDef] = Object.entries(t.toJSON()['Resources'] as Resources).find(([, r]) => r.Type === 'AWS::ECS::TaskDefinition')!;
      const container = taskDef.Properties['ContainerDefinitions'][0] as Record<string, any>;
      return Object.fromEntries((container['Environment'] as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]));
    };
    expect(envOf(Template.fromStack(quickStack({ handlerModule: '/app/dist/handlers.js#handlers' }).stack))['KEEPER_HANDLERS']).toBe('/app/dist/handlers.js#handlers');
    expect(envOf(template)).not.toHaveProperty('KEEPER_HANDLERS');
  });

  it('scale on CPU between minWorkers and maxWorkers', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 2, MaxCapacity: 6, ScalableDimension: 'ecs:service:DesiredCount' });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: 60, PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' } }),
    });
    const quick = Template.fromStack(quickStack({ minWorkers: 3, maxWorkers: 9 }).stack);
    quick.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 3, MaxCapacity: 9 });
  });

  it('replace themselves new-before-old and roll back a failing deployment', () => {
    template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DeploymentConfiguration: Match.objectLike({ MinimumHealthyPercent: 100, MaximumPercent: 200, DeploymentCircuitBreaker: { Enable: true, Rollback: true } }),
    });
  });
});

describe('least privilege', () => {
  /** The DynamoDB statements of the policies attached to a role (by logical id). */
  function dynamoStatements(roleLogicalId: string): Array<{ Action: string | string[]; Resource: unknown }> {
    return ofType('AWS::IAM::Policy')
      .filter(([, p]) => (p.Properties['Roles'] as Array<{ Ref: string }>).some((r) => r.Ref === roleLogicalId))
      .flatMap(([, p]) => p.Properties['PolicyDocument']['Statement'] as Array<{ Action: string | string[]; Resource: unknown }>)
      .filter((s) => [s.Action].flat().some((a) => a.startsWith('dynamodb:')));
  }

  const tableArn = () => ({ 'Fn::GetAtt': [tableRef(), 'Arn'] });
  const indexArn = (name: string) => ({ 'Fn::Join': ['', [tableArn(), `/index/${name}`]] });

  function expectAccess(roleLogicalId: string, access: { items: readonly string[]; queries: readonly string[] }) {
    const statements = dynamoStatements(roleLogicalId);
    const itemStatement = statements.find((s) => s.Resource && JSON.stringify(s.Resource) === JSON.stringify(tableArn()));
    expect([itemStatement?.Action].flat().sort()).toEqual(access.items.map((a) => `dynamodb:${a}`).sort());
    const queryStatements = statements.filter((s) => [s.Action].flat().includes('dynamodb:Query'));
    if (access.queries.length === 0) expect(queryStatements).toEqual([]);
    else expect(queryStatements).toEqual([{ Action: 'dynamodb:Query', Effect: 'Allow', Resource: access.queries.length === 1 ? indexArn(access.queries[0]!) : access.queries.map(indexArn) }]);
    expect(statements.length).toBe(access.queries.length > 0 ? 2 : 1);
  }

  function functionRole(handler: string): string {
    const fn = ofType('AWS::Lambda::Function').find(([, f]) => f.Properties['Handler'] === handler);
    expect(fn, `a function with handler ${handler}`).toBeDefined();
    return fn![1].Properties['Role']['Fn::GetAtt'][0] as string;
  }

  it('no policy grants a DynamoDB action on a wildcard resource', () => {
    const statements = ofType('AWS::IAM::Policy').flatMap(([, p]) => p.Properties['PolicyDocument']['Statement'] as Array<{ Action: string | string[]; Resource: unknown }>);
    const dynamo = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith('dynamodb:')));
    expect(dynamo.length).toBeGreaterThanOrEqual(7);
    for (const statement of dynamo) {
      expect(JSON.stringify(statement.Resource)).not.toContain('*');
      expect([statement.Action].flat().every((a) => !a.includes('*'))).toBe(true);
    }
    expect(ofType('AWS::IAM::ManagedPolicy')).toEqual([]);
  });

  it('workers may use only their table and its two indexes', () => {
    const [, taskDef] = ofType('AWS::ECS::TaskDefinition')[0]!;
    expectAccess(taskDef.Properties['TaskRoleArn']['Fn::GetAtt'][0] as string, tableAccess.worker);
  });

  it.each([
    ['index.create', tableAccess.createTask],
    ['index.get', tableAccess.getTask],
    ['index.list', tableAccess.listTasks],
    ['index.update', tableAccess.updateTask],
    ['index.remove', tableAccess.deleteTask],
    ['index.release', tableAccess.releaseTask],
    ['index.drain', tableAccess.drainNode],
    ['index.handler', tableAccess.health],
  ])('the function %s gets only its own access', (handler, access) => {
    expectAccess(functionRole(handler), access);
  });

  it('every function has its own role and log group, and no managed policy', () => {
    const functions = ofType('AWS::Lambda::Function');
    expect(functions).toHaveLength(8);
    const roles = new Set(functions.map(([, f]) => f.Properties['Role']['Fn::GetAtt'][0] as string));
    expect(roles.size).toBe(8);
    for (const role of roles) expect(resources[role]!.Properties['ManagedPolicyArns']).toBeUndefined();
    for (const [, f] of functions) {
      expect(f.Properties).toMatchObject({ Runtime: 'nodejs24.x', LoggingConfig: { LogGroup: { Ref: expect.any(String) } } });
      expect(f.Properties['Environment']['Variables']['KEEPER_TABLE']).toEqual({ Ref: tableRef() });
    }
  });
});

describe('task API', () => {
  it('routes every operation through IAM authorisation to its own function', () => {
    const routes = ofType('AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    expect(routes.map((r) => r['RouteKey']).sort()).toEqual([
      'DELETE /tasks/{id+}',
      'GET /tasks',
      'GET /tasks/{id+}',
      'PATCH /tasks/{id+}',
      'POST /nodes/{id}/drain',
      'POST /nodes/{id}/undrain',
      'POST /tasks',
      'POST /tasks/{id+}',
    ]);
    for (const route of routes) expect(route['AuthorizationType']).toBe('AWS_IAM');
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: '$default', AutoDeploy: true, AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }) });
  });

  it('runs the health check every minute', () => {
    const health = ofType('AWS::Lambda::Function').find(([, f]) => f.Properties['Handler'] === 'index.handler')![0];
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [health, 'Arn'] }, RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 } })],
    });
    const [, fn] = ofType('AWS::Lambda::Function').find(([id]) => id === health)!;
    expect(fn.Properties['Environment']['Variables']).toMatchObject({ KEEPER_PERIOD_MS: '1000', KEEPER_STALE_TICKS: '4', KEEPER_DRIFT_BOUND: '1.05', POWERTOOLS_SERVICE_NAME: { Ref: tableRef() } });
    // Long enough to watch counters for a failover bound at a typical index lag (9.65 s at
    // P = 1 s: 7.55 s, and the declarer's look two periods later), then read the orphans.
    expect(healthWindowMs(resolveConfig({ periodMs: 1000 }))).toBeCloseTo(failoverBoundMs(resolveConfig({ periodMs: 1000 })) + 2 * 1000 * 1.05);
    expect(fn.Properties['Timeout']).toBe(Math.ceil(healthWindowMs(resolveConfig({ periodMs: 1000 })) / 1000) + 30);
  });
});

describe('alarms and dashboard', () => {
  const topic = () => ofType('AWS::SNS::Topic')[0]![0];
  const alarms = () => ofType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
  const dimensions = () => [{ Name: 'service', Value: { Ref: tableRef() } }];

  /** The alarm whose own metric, or one metric of whose expression, is `name`. */
  function alarmOn(name: string): Record<string, any> {
    const found = alarms().filter((a) => a['MetricName'] === name || (a['Metrics'] as Array<any> | undefined)?.some((m) => m.MetricStat?.Metric?.MetricName === name));
    expect(found, `one alarm on ${name}`).toHaveLength(1);
    return found[0]!;
  }

  it('has five alarms, each telling the encrypted topic when it fires and when it clears', () => {
    expect(alarms()).toHaveLength(5);
    for (const alarm of alarms()) {
      expect(alarm['AlarmActions']).toEqual([{ Ref: topic() }]);
      expect(alarm['OKActions']).toEqual([{ Ref: topic() }]);
      expect(alarm['AlarmDescription']).toMatch(/docs\/deploy\.md#alarms/);
    }
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: { Statement: Match.arrayWith([Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] })]) },
    });
  });

  it('any failover: nodes declared dead in a minute, at the configured threshold', () => {
    expect(alarmOn(metricNames.nodeDeclaredDead)).toMatchObject({
      Namespace: 'Keeper',
      Dimensions: dimensions(),
      Statistic: 'Sum',
      Period: 60,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    const quick = Template.fromStack(quickStack({ alarms: { failoverThreshold: 3 } }).stack);
    quick.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: metricNames.nodeDeclaredDead, Threshold: 3 });
  });

  it('orphaned tasks: a task without a live owner at every check for N minutes', () => {
    expect(alarmOn(metricNames.orphanedTasks)).toMatchObject({ Namespace: 'Keeper', Dimensions: dimensions(), Period: 60, Threshold: 1, EvaluationPeriods: 5, DatapointsToAlarm: 5 });
    const quick = Template.fromStack(quickStack({ alarms: { orphanedMinutes: 12 } }).stack);
    quick.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: metricNames.orphanedTasks, EvaluationPeriods: 12, DatapointsToAlarm: 12 });
  });

  it('no live worker: fewer than one live node, and silence counts as none', () => {
    expect(alarmOn(metricNames.liveNodes)).toMatchObject({
      Namespace: 'Keeper',
      Dimensions: dimensions(),
      Statistic: 'Maximum',
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
  });

  it('heartbeat failure rate: failures over attempts, in percent, over five minutes', () => {
    const alarm = alarmOn(metricNames.heartbeatFailures);
    expect(alarm).toMatchObject({ Threshold: 10, ComparisonOperator: 'GreaterThanThreshold' });
    const metrics = alarm['Metrics'] as Array<any>;
    expect(metrics.find((m) => m.Expression)?.Expression).toBe('100 * FILL(failures, 0) / attempts');
    const stats = metrics.filter((m) => m.MetricStat).map((m) => ({ id: m.Id, name: m.MetricStat.Metric.MetricName, period: m.MetricStat.Period, stat: m.MetricStat.Stat }));
    expect(stats.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
      { id: 'attempts', name: metricNames.heartbeats, period: 300, stat: 'Sum' },
      { id: 'failures', name: metricNames.heartbeatFailures, period: 300, stat: 'Sum' },
    ]);
  });

  it('self-fencing: a lease run out or a node declared dead while alive', () => {
    const alarm = alarmOn(metricNames.selfFenced);
    expect(alarmOn(metricNames.declaredDeadWhileAlive)).toBe(alarm);
    expect(alarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    expect((alarm['Metrics'] as Array<any>).find((m) => m.Expression)?.Expression).toBe('FILL(fenced, 0) + FILL(zombie, 0)');
  });

  it('a dashboard shows every metric the alarms watch, and the takeover figures', () => {
    const [, dashboard] = ofType('AWS::CloudWatch::Dashboard')[0]!;
    const body = JSON.stringify(dashboard.Properties['DashboardBody']);
    for (const name of [
      metricNames.liveNodes,
      metricNames.staleNodes,
      metricNames.nodeDeclaredDead,
      metricNames.tasksTakenOver,
      metricNames.takeoverLatency,
      metricNames.orphanedTasks,
      metricNames.oldestOrphanedTaskAge,
      metricNames.heartbeatFailures,
      metricNames.heartbeats,
      metricNames.selfFenced,
      metricNames.declaredDeadWhileAlive,
      metricNames.ownedTasks,
    ]) {
      expect(body).toContain(`\\"${name}\\"`);
    }
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports nothing that is not acknowledged', () => {
    const report = new AwsSolutionsChecks(app).validateScope(stack);
    expect(report.violations.map((v) => `${v.ruleName} (${v.severity}) at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('acknowledges exactly two findings, each with a written reason', () => {
    const acknowledged: Array<{ path: string; id: string; reason: string }> = [];
    for (const construct of stack.node.findAll()) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          if (id.includes('AwsSolutions')) acknowledged.push({ path: construct.node.path, id: id.replace(/^annotation::/i, ''), reason });
        }
      }
    }
    expect(acknowledged.map((a) => a.id).sort()).toEqual(['AwsSolutions-ECS2', 'AwsSolutions-IAM5[Resource::*]']);
    for (const a of acknowledged) expect(a.reason.length).toBeGreaterThan(60);
  });

  it('does find problems: the same checks flag the deployment without its acknowledgements', () => {
    const quickApp = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
    const quick = new Stack(quickApp, 'Unacknowledged');
    const cluster = new KeeperCluster(quick, 'Keeper', { workerImage: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/worker:1'), minWorkers: 1, maxWorkers: 1 });
    // Stand-in for a careless edit: a second container with a plain environment, unacknowledged.
    const extra = new ecs.FargateTaskDefinition(cluster, 'Extra');
    extra.addContainer('c', { image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/other:1'), environment: { A: 'b' }, logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'x' }) });
    const report = new AwsSolutionsChecks(quickApp).validateScope(quick);
    expect(report.violations.map((v) => v.ruleName)).toContain('AwsSolutions-ECS2');
  });
});

describe('invalid props fail the synth with one readable message and leave nothing behind', () => {
  const image = ecs.ContainerImage.fromRegistry('public.ecr.aws/example/worker:1');

  it.each<[string, Partial<KeeperClusterProps>, string]>([
    ['min above max', { minWorkers: 5, maxWorkers: 2 }, 'KeeperCluster: minWorkers (5) is more than maxWorkers (2); raise maxWorkers or lower minWorkers'],
    ['no workers', { minWorkers: 0, maxWorkers: 2 }, 'KeeperCluster: minWorkers must be a whole number of at least 1, got 0'],
    ['fractional workers', { minWorkers: 1, maxWorkers: 2.5 }, 'KeeperCluster: maxWorkers must be a whole number of at least 1, got 2.5'],
    ['a negative period', { periodMs: -5 }, 'KeeperCluster: periodMs must be > 0'],
    [
      'a period that breaks the safety bound',
      { staleTicks: 2, driftBound: 1.5 },
      'KeeperCluster: staleTicks 2 is too small for driftBound 1.5 at periodMs 1000: no self-fencing window is both safe and longer than one period plus a slow heartbeat; use staleTicks >=',
    ],
    ['a period too long to watch from Lambda', { periodMs: 200_000 }, 'too long for the health check to watch within one Lambda run (900 s); use a shorter period'],
    ['an orphan window of zero minutes', { alarms: { orphanedMinutes: 0 } }, 'KeeperCluster: alarms.orphanedMinutes must be a whole number from 1 to 60, got 0'],
    ['a failure rate of 100%', { alarms: { heartbeatFailurePercent: 100 } }, 'KeeperCluster: alarms.heartbeatFailurePercent must be above 0 and below 100, got 100'],
    ['a bad alarm address', { alarmEmails: ['ops'] }, 'KeeperCluster: alarmEmails: "ops" is not an email address'],
    ['a handler module path with a space', { handlerModule: '/app/my handlers.js' }, 'KeeperCluster: handlerModule must be a path inside the image without spaces, e.g. /app/dist/handlers.js, got "/app/my handlers.js"'],
    ['an empty handler module path', { handlerModule: '' }, 'KeeperCluster: handlerModule must be a path inside the image without spaces'],
    ['an app version with a space', { appVersion: '1.0 beta' }, 'KeeperCluster: appVersion must be 1-256 visible ASCII characters'],
  ])('%s', (_what, props, message) => {
    const quick = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Bad');
    let error: unknown;
    try {
      new KeeperCluster(quick, 'Keeper', { workerImage: image, minWorkers: 1, maxWorkers: 2, ...props });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(message);
    expect(quick.node.children).toEqual([]);
  });

  it('the app refuses a bad context value the same way', async () => {
    const { spawnSync } = await import('node:child_process');
    const badOut = mkdtempSync(join(tmpdir(), 'keeper-bad-'));
    const out = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'infra/app.ts')], {
      cwd: repoRoot,
      env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify({ 'keeper:minWorkers': '4', 'keeper:maxWorkers': '2' }), CDK_OUTDIR: badOut },
      encoding: 'utf8',
      timeout: 60_000,
    });
    rmSync(badOut, { recursive: true, force: true });
    expect(out.status).not.toBe(0);
    expect(out.stderr).toContain('KeeperCluster: minWorkers (4) is more than maxWorkers (2)');
  });
});

// ---------------------------------------------------------------- against DynamoDB Local

/**
 * An HTTP proxy in front of DynamoDB Local that records each call (operation and index),
 * to hold every part of the deployment to its IAM policy: whatever it calls must be granted.
 * A transaction is recorded as the actions inside it, which is how IAM authorises it (an
 * Update in TransactWriteItems needs dynamodb:UpdateItem), with `via` naming the transaction.
 */
class RecordingProxy {
  readonly calls: Array<{ operation: string; index?: string; via?: string }> = [];
  private server: Server | undefined;
  endpoint = '';

  constructor(private readonly upstream: string) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '?';
        const input = JSON.parse(body.toString('utf8') || '{}') as { IndexName?: string; TransactItems?: Array<Record<string, unknown>> };
        if (input.TransactItems) {
          const inner = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem', Get: 'GetItem' } as Record<string, string>;
          for (const item of input.TransactItems) for (const kind of Object.keys(item)) this.calls.push({ operation: inner[kind] ?? kind, via: operation });
        } else this.calls.push({ operation, ...(input.IndexName ? { index: input.IndexName } : {}) });
        const upstream = request(`${this.upstream}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 500, answer.headers);
          answer.pipe(res);
        });
        upstream.on('error', () => res.destroy());
        upstream.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }

  take(): Array<{ operation: string; index?: string; via?: string }> {
    return this.calls.splice(0);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

/** The IAM actions and index ARNs a set of recorded calls needs, as "Action" or "Action on index". */
const needs = (calls: Array<{ operation: string; index?: string }>) => [...new Set(calls.map((c) => (c.index ? `Query on ${c.index}` : c.operation)))].sort();
const grants = (access: { items: readonly string[]; queries: readonly string[] }) => [...access.items, ...access.queries.map((q) => `Query on ${q}`)].sort();

describe('against DynamoDB Local', () => {
  let t: TestTable;
  let proxy: RecordingProxy;

  beforeAll(async () => {
    t = await freshTable('infra');
    proxy = new RecordingProxy(t.endpoint);
    await proxy.start();
    vi.stubEnv('KEEPER_TABLE', t.table);
    vi.stubEnv('AWS_ENDPOINT_URL_DYNAMODB', proxy.endpoint);
    vi.stubEnv('KEEPER_PERIOD_MS', '200');
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', 'infra-test');
  });

  afterAll(async () => {
    vi.unstubAllEnvs();
    await proxy.close();
    await t.drop();
  });

  const context = { functionName: 'f', awsRequestId: 'r', getRemainingTimeInMillis: () => 10_000 } as never;
  const event = (routeKey: string, path: string, extra: Record<string, unknown> = {}) =>
    ({
      version: '2.0',
      routeKey,
      rawPath: path,
      rawQueryString: '',
      headers: { 'content-type': 'application/json' },
      requestContext: { http: { method: routeKey.split(' ')[0], path }, routeKey, stage: '$default' },
      isBase64Encoded: false,
      ...extra,
    }) as never;

  /** The bundle a function runs in Lambda, loaded from cdk.out. */
  async function bundled(handler: string): Promise<Record<string, (e: never, c: never) => Promise<any>>> {
    const fn = ofType('AWS::Lambda::Function').find(([, f]) => f.Properties['Handler'] === `index.${handler}`)![1];
    const hash = String(fn.Properties['Code']['S3Key']).replace(/\.zip$/, '');
    const manifest = JSON.parse(readFileSync(join(outdir, 'Keeper.assets.json'), 'utf8')) as { files: Record<string, { source: { path: string } }> };
    const source = manifest.files[hash]?.source.path;
    const dir = source ? join(outdir, source) : undefined;
    expect(dir && existsSync(join(dir, 'index.mjs')), `bundle of ${handler}`).toBe(true);
    return (await import(pathToFileURL(join(dir!, 'index.mjs')).href)) as Record<string, (e: never, c: never) => Promise<any>>;
  }

  it('the bundled task API and health check run as they would in Lambda (ESM, SDK included)', async () => {
    const api = await bundled('create');
    const created = await api['create']!(event('POST /tasks', '/tasks', { body: JSON.stringify({ id: 'from-bundle', payload: { a: 1 } }) }), context);
    expect(created.statusCode).toBe(201);
    expect(JSON.parse(created.body)).toMatchObject({ created: true, task: { id: 'from-bundle', payload: { a: 1 } } });
    const bad = await api['create']!(event('POST /tasks', '/tasks', { body: '{' }), context);
    expect(bad.statusCode).toBe(400);
    const health = await bundled('handler');
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const figures = await health['handler']!({ 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} } as never, context);
      expect(figures).toMatchObject({ liveNodes: 0, orphanedTasks: 1, readyTasks: 1 });
    } finally {
      vi.restoreAllMocks();
    }
  });

  /** The calls the last holdTo recorded. */
  let recorded: ReturnType<RecordingProxy['take']> = [];

  /** Runs `calls`, then checks that every DynamoDB call they made is granted by `access`. */
  async function holdTo(access: { items: readonly string[]; queries: readonly string[] }, calls: () => Promise<unknown>): Promise<string[]> {
    proxy.take();
    await calls();
    recorded = proxy.take();
    const used = needs(recorded);
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((n) => !grants(access).includes(n))).toEqual([]);
    return used;
  }

  it('each task API function calls DynamoDB only in ways its policy allows', async () => {
    const api = await import('../functions/task-api.js');
    const admin = new TaskAdmin(t.store());
    const owner = makeWorker({ id: 'owner', store: t.store() }, new Ledger(), { periodMs: 200 });
    await owner.start();
    try {
      const owned = ['owned-1', 'owned-2', 'owned-3'];
      for (const id of owned) await admin.add({ id });
      await waitFor('the worker to run its tasks', () => owned.every((id) => owner.runningTasks().includes(id)));
      const post = (v: unknown) => api.create(event('POST /tasks', '/tasks', { body: JSON.stringify(v) }), context);
      const withId = (routeKey: string, id: string) => event(routeKey, `/tasks/${id}`, { pathParameters: { id } });

      expect(await holdTo(tableAccess.createTask, async () => {
        // A type no worker runs, so that it stays unowned for the release below.
        expect((await post({ id: 'x1', type: 'idle' })).statusCode).toBe(201);
        expect((await post({ id: 'x1', type: 'idle' })).statusCode).toBe(200);
        expect((await post({ id: 'x1', type: 'idle', payload: 2 })).statusCode).toBe(409);
      })).toEqual(['GetItem', 'PutItem', 'UpdateItem']);
      expect(await holdTo(tableAccess.drainNode, async () => {
        const node = (action: string, id: string) => event(`POST /nodes/{id}/${action}`, `/nodes/${id}/${action}`, { pathParameters: { id } });
        expect((await api.drain(node('drain', 'owner'), context)).statusCode).toBe(200);
        expect((await api.drain(node('undrain', 'owner'), context)).statusCode).toBe(200);
        expect((await api.drain(node('drain', 'nobody'), context)).statusCode).toBe(404);
      })).toEqual(['UpdateItem']);
      await holdTo(tableAccess.getTask, async () => {
        expect((await api.get(withId('GET /tasks/{id+}', 'x1'), context)).statusCode).toBe(200);
        expect((await api.get(withId('GET /tasks/{id+}', 'nope'), context)).statusCode).toBe(404);
      });
      await holdTo(tableAccess.listTasks, async () => {
        const first = await api.list(event('GET /tasks', '/tasks', { queryStringParameters: { limit: '1' } }), context);
        const cursor = JSON.parse(first.body ?? '{}').cursor as string;
        expect((await api.list(event('GET /tasks', '/tasks', { queryStringParameters: { limit: '1', cursor } }), context)).statusCode).toBe(200);
      });
      expect(await holdTo(tableAccess.updateTask, async () => {
        const patch = (id: string, body: unknown) => api.update(event('PATCH /tasks/{id+}', `/tasks/${id}`, { pathParameters: { id }, body: JSON.stringify(body) }), context);
        expect((await patch('x1', { payload: { v: 2 } })).statusCode).toBe(200); // unowned: the cluster's task counter
        expect((await patch('owned-3', { payload: { v: 2 } })).statusCode).toBe(200); // owned: the owner's inbox
        expect((await patch('owned-3', { payload: { v: 3 }, ifToken: 0 })).statusCode).toBe(409);
        expect((await patch('nope', { payload: 1 })).statusCode).toBe(404);
      })).toEqual(['GetItem', 'UpdateItem']);
      expect(await holdTo(tableAccess.releaseTask, async () => {
        expect((await api.release(withId('POST /tasks/{id+}', 'x1/release'), context)).statusCode).toBe(200); // unowned
        expect((await api.release(withId('POST /tasks/{id+}', 'owned-1/release'), context)).statusCode).toBe(202); // live owner
        await owner.kill();
        const inc = (await t.store().getNode('owner'))!.inc;
        expect(await t.store().markLeft('owner', inc)).toBe(true);
        expect(await t.store().getNode('owner')).toMatchObject({ state: 'left' });
        expect((await api.release(withId('POST /tasks/{id+}', 'owned-2/release'), context)).statusCode).toBe(200); // owner gone: moved
      })).toEqual(['GetItem', 'UpdateItem']);
      expect(await holdTo(tableAccess.deleteTask, async () => {
        expect((await api.remove(withId('DELETE /tasks/{id+}', 'owned-3'), context)).statusCode).toBe(200); // notifies the owner
        expect((await api.remove(withId('DELETE /tasks/{id+}', 'owned-3'), context)).statusCode).toBe(404);
      })).toEqual(['DeleteItem', 'UpdateItem']);
    } finally {
      await owner.kill();
    }
  });

  it('the health check calls DynamoDB only in ways its policy allows', async () => {
    const { checkHealth } = await import('../functions/health.js');
    const { configFromEnv, storeFromEnv } = await import('../functions/environment.js');
    await holdTo(tableAccess.health, () => checkHealth({ store: storeFromEnv(), config: configFromEnv() }));
  });

  it('workers call DynamoDB only in ways their policy allows, through join, takeover and leave', async () => {
    const local = await freshTable('infra-workers');
    const client = createDynamoClient({ endpoint: proxy.endpoint, requestTimeoutMs: 2000 });
    const viaProxy = () => new DynamoStore({ client: documentClient(client), table: local.table, requestTimeoutMs: 2000 });
    const ledger = new Ledger();
    const [a, b, c] = ['a', 'b', 'c'].map((id) => makeWorker({ id, store: viaProxy() }, ledger, { periodMs: 150 })) as [Worker, Worker, Worker];
    const tasks = Array.from({ length: 12 }, (_, i) => `w-${i}`);
    try {
      const used = await holdTo(tableAccess.worker, async () => {
        for (const w of [a, b, c]) await w.start();
        const admin = new TaskAdmin(local.store());
        for (const id of tasks) await admin.add({ id });
        await waitFor('all to run tasks', () => [a, b, c].every((w) => w.runningTasks().length > 0));
        await b.kill();
        await waitFor('a and c to take every task over', () => a.runningTasks().length + c.runningTasks().length === tasks.length);
        await a.stop(); // hands its tasks to c in one batch move
        await waitFor('c to run every task', () => c.runningTasks().length === tasks.length);
        await c.stop();
      });
      // The run went through the paths that matter, so the check above means something.
      expect(used).toEqual(expect.arrayContaining(['BatchGetItem', 'GetItem', 'PutItem', 'UpdateItem', 'Query on byOwner', 'Query on members']));
      expect(recorded.some((call) => call.via === 'TransactWriteItems')).toBe(true);
      ledger.expectSafe();
    } finally {
      await Promise.all([a, b, c].map((w) => w.kill()));
      client.destroy();
      await local.drop();
    }
  });
});

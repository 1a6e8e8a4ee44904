import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { ConfigError, failoverBoundMs, healthWindowMs, resolveConfig, type KeeperConfig } from '../config.js';
import { metricsNamespace } from '../metrics.js';
import { healthCheckCommand } from '../worker-health.js';
import { KeeperFunction } from './lambda.js';
import { KeeperMonitoring, type AlarmSettings } from './monitoring.js';
import { createTaskTable, grantTableAccess, tableAccess } from './task-table.js';

/** Props of KeeperCluster: the worker image and autoscaling bounds are required, everything else has a default. */
export interface KeeperClusterProps {
  /**
   * The worker image: one whose command runs `keeper worker` (with `handlerModule`, your
   * handlers; without, the built-in demo handler), or your own entry point that calls
   * `runWorker` (docs/deploy.md).
   */
  workerImage: ecs.ContainerImage;
  /**
   * Path, inside the image, of an ES module whose default export (or export `handlers`, or
   * `<path>#<export>`) maps task types to handlers. Set as `KEEPER_HANDLERS`, which
   * `keeper worker` loads: the alternative to an entry point of your own. Relative paths
   * are resolved from the image's working directory.
   */
  handlerModule?: string;
  /**
   * The application version the workers publish (KEEPER_APP_VERSION): placement prefers the
   * workers of the newest version present, so that a deployment moves each task once, from
   * an old worker straight to a new one. Default: the worker image's reference as the task
   * definition names it (an asset's changes with its content hash). Set it when a deployment
   * can change the workers without changing that reference (a mutable tag such as
   * `latest`, or a change of settings only).
   */
  appVersion?: string;
  /** Fewest workers; CPU autoscaling never goes below. At least 1. */
  minWorkers: number;
  /** Most workers; CPU autoscaling never goes above. */
  maxWorkers: number;
  /** Heartbeat period P in ms; default 1000. Checked with the workers' own rules (resolveConfig). */
  periodMs?: number;
  /** Benchmark ticks before a peer is stale (K); default 4. */
  staleTicks?: number;
  /** Clock drift bound (f); default 1.05. */
  driftBound?: number;
  /** Fargate CPU units per worker; default 256. */
  cpu?: number;
  /** Fargate memory per worker in MiB; default 512. */
  memoryLimitMiB?: number;
  /** CPU utilisation the autoscaling aims for, in percent; default 60. */
  cpuTargetPercent?: number;
  /** Where the workers run; default a new VPC with public subnets only, no NAT gateway, and a DynamoDB gateway endpoint. */
  vpc?: ec2.IVpc;
  /** Subnets for the workers; default the public ones of the VPC made here, else the private ones with egress. */
  vpcSubnets?: ec2.SubnetSelection;
  /** RETAIN (default) keeps the table, with deletion protection, when the stack goes; DESTROY removes everything. */
  removalPolicy?: RemovalPolicy;
  /** Retention of every log group; default one month. */
  logRetention?: logs.RetentionDays;
  /** CloudWatch namespace of the cluster's metrics; default "Keeper". */
  metricsNamespace?: string;
  /** Alarm thresholds; see AlarmSettings for the defaults. */
  alarms?: Partial<AlarmSettings>;
  /** Addresses subscribed to the alarm topic by email (each confirms once). */
  alarmEmails?: string[];
}

/** Fargate gives a container at most this long between SIGTERM and SIGKILL. */
const fargateMaxStopTimeout = Duration.seconds(120);
/** Lambda's longest run; the health check must confirm liveness within one. */
const lambdaMaxTimeoutSeconds = 900;
/** The UDP port workers' doorbells listen on (see lib/doorbell.ts). */
export const doorbellPort = 7070;
/** The TCP port, on 127.0.0.1 inside each task, where workers serve their health (lib/worker-health.ts). */
export const healthPort = 7071;

/**
 * The worker container's health check, from the protocol's settings. ECS counts a new worker
 * as running only once it is healthy (joined, with a valid lease), so that a deployment
 * (minimum 100 %) stops an old worker only after its replacement has joined; and it replaces
 * a worker whose checks keep failing.
 */
export function workerHealthCheck(protocol: KeeperConfig): ecs.HealthCheck {
  const periodS = protocol.periodMs / 1000;
  // A worker's health changes at most once a period (its heartbeat), so asking more often
  // learns nothing; 5 s is the least ECS allows, and what a deployment waits at most, beyond
  // the join itself, to see a new worker healthy.
  const interval = Math.min(300, Math.max(5, Math.ceil(periodS)));
  // A lease lost for less than the failover bound is a blip the worker rides out by itself:
  // no peer has taken its tasks yet, and its next heartbeat renews it. Longer, peers have
  // declared it dead, and a worker that still cannot renew (its own network, a wedged
  // process) is replaced: only after failures in a row for longer than that bound.
  const retries = Math.min(10, Math.ceil(failoverBoundMs(protocol) / 1000 / interval) + 1);
  // Failures before the first success do not count for this long: the process starts, checks
  // the table and joins within seconds, and a node whose id looks held first watches it for
  // K periods (on ECS every task's id is new, but a restarted container keeps its host name).
  const startPeriod = Math.min(300, 30 + Math.ceil(protocol.staleTicks * periodS * protocol.driftBound));
  return {
    command: healthCheckCommand(healthPort),
    interval: Duration.seconds(interval),
    // Node's start-up on a fraction of a vCPU plus the check's own 2 s wait for an answer.
    timeout: Duration.seconds(5),
    retries,
    startPeriod: Duration.seconds(startPeriod),
  };
}

interface Settings {
  protocol: KeeperConfig;
  minWorkers: number;
  maxWorkers: number;
  cpuTargetPercent: number;
  alarms: AlarmSettings;
  healthTimeout: Duration;
}

const isWhole = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n);

/**
 * Checks every setting before a single resource exists, so a bad one fails the synth with
 * one message that names it, and never leaves half a cluster behind.
 */
export function checkClusterProps(props: KeeperClusterProps): Settings {
  const refuse = (message: string): never => {
    throw new ConfigError(`KeeperCluster: ${message}`);
  };
  const { minWorkers, maxWorkers } = props;
  if (!isWhole(minWorkers) || minWorkers < 1) refuse(`minWorkers must be a whole number of at least 1, got ${String(minWorkers)}`);
  if (!isWhole(maxWorkers) || maxWorkers < 1) refuse(`maxWorkers must be a whole number of at least 1, got ${String(maxWorkers)}`);
  if (minWorkers > maxWorkers) refuse(`minWorkers (${minWorkers}) is more than maxWorkers (${maxWorkers}); raise maxWorkers or lower minWorkers`);

  let protocol: KeeperConfig;
  try {
    protocol = resolveConfig({
      ...(props.periodMs !== undefined ? { periodMs: props.periodMs } : {}),
      ...(props.staleTicks !== undefined ? { staleTicks: props.staleTicks } : {}),
      ...(props.driftBound !== undefined ? { driftBound: props.driftBound } : {}),
      ...(props.appVersion !== undefined ? { appVersion: props.appVersion } : {}),
    });
  } catch (error) {
    if (error instanceof ConfigError) return refuse(error.message);
    throw error;
  }
  // The health check watches counters for up to one failover bound (index lag included), then reads the orphans.
  const healthSeconds = Math.ceil(healthWindowMs(protocol) / 1000) + 30;
  if (healthSeconds > lambdaMaxTimeoutSeconds) {
    refuse(
      `periodMs ${protocol.periodMs} with staleTicks ${protocol.staleTicks} makes the failover bound ${Math.round(healthWindowMs(protocol) / 1000)} s, ` +
        `too long for the health check to watch within one Lambda run (${lambdaMaxTimeoutSeconds} s); use a shorter period`,
    );
  }

  const cpuTargetPercent = props.cpuTargetPercent ?? 60;
  if (!(cpuTargetPercent > 0 && cpuTargetPercent <= 100)) refuse(`cpuTargetPercent must be above 0 and at most 100, got ${cpuTargetPercent}`);

  const alarms: AlarmSettings = { failoverThreshold: 1, orphanedMinutes: 5, heartbeatFailurePercent: 10, ...props.alarms };
  if (!isWhole(alarms.failoverThreshold) || alarms.failoverThreshold < 1) refuse(`alarms.failoverThreshold must be a whole number of at least 1, got ${alarms.failoverThreshold}`);
  if (!isWhole(alarms.orphanedMinutes) || alarms.orphanedMinutes < 1 || alarms.orphanedMinutes > 60) {
    refuse(`alarms.orphanedMinutes must be a whole number from 1 to 60, got ${alarms.orphanedMinutes}`);
  }
  if (!(alarms.heartbeatFailurePercent > 0 && alarms.heartbeatFailurePercent < 100)) {
    refuse(`alarms.heartbeatFailurePercent must be above 0 and below 100, got ${alarms.heartbeatFailurePercent}`);
  }
  if (props.handlerModule !== undefined && !/^[^\s#][^\s]*$/.test(props.handlerModule)) {
    refuse(`handlerModule must be a path inside the image without spaces, e.g. /app/dist/handlers.js, got ${JSON.stringify(props.handlerModule)}`);
  }
  for (const email of props.alarmEmails ?? []) if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) refuse(`alarmEmails: "${email}" is not an email address`);

  return { protocol, minWorkers, maxWorkers, cpuTargetPercent, alarms, healthTimeout: Duration.seconds(healthSeconds) };
}

/**
 * A keeper cluster on AWS: the table, the workers on Fargate, the task API, the health
 * check, and the alarms and dashboard that watch them.
 */
export class KeeperCluster extends Construct {
  readonly table: dynamodb.Table;
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly api: apigwv2.HttpApi;
  /** The API's base URL (IAM-authorised). */
  readonly apiUrl: string;
  readonly alarmTopic: sns.Topic;
  readonly monitoring: KeeperMonitoring;
  readonly healthFunction: KeeperFunction;
  readonly taskFunctions: Record<'create' | 'get' | 'list' | 'update' | 'remove' | 'release', KeeperFunction>;
  /** Serves POST /nodes/{id}/drain and /nodes/{id}/undrain: an operator's drain of a worker. */
  readonly drainFunction: KeeperFunction;

  constructor(scope: Construct, id: string, props: KeeperClusterProps) {
    // Checked before the construct joins the tree: a refusal leaves nothing behind.
    const settings = checkClusterProps(props);
    super(scope, id);
    const { protocol } = settings;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const namespace = props.metricsNamespace ?? metricsNamespace;

    this.table = createTaskTable(this, 'Table', removalPolicy);
    const tableName = this.table.tableName;
    // What workers and the health function agree on: the table, the protocol, where metrics go.
    const shared = {
      KEEPER_TABLE: tableName,
      KEEPER_PERIOD_MS: String(protocol.periodMs),
      KEEPER_STALE_TICKS: String(protocol.staleTicks),
      KEEPER_DRIFT_BOUND: String(protocol.driftBound),
      POWERTOOLS_SERVICE_NAME: tableName,
      POWERTOOLS_METRICS_NAMESPACE: namespace,
    };

    // ------------------------------------------------------------ workers
    const vpc = props.vpc ?? this.createVpc(logRetention, removalPolicy);
    const ownVpc = props.vpc === undefined;
    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
    const taskDefinition = new ecs.FargateTaskDefinition(this, 'WorkerTask', {
      cpu: props.cpu ?? 256,
      memoryLimitMiB: props.memoryLimitMiB ?? 512,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    const workerLogs = new logs.LogGroup(this, 'WorkerLogs', { retention: logRetention, removalPolicy });
    const worker = taskDefinition.addContainer('worker', {
      image: props.workerImage,
      environment: {
        ...shared,
        KEEPER_METRICS: 'emf',
        KEEPER_DOORBELL_PORT: String(doorbellPort),
        KEEPER_HEALTH_PORT: String(healthPort),
        ...(props.handlerModule !== undefined ? { KEEPER_HANDLERS: props.handlerModule } : {}),
      },
      // Runs `node -e` with a localhost request (healthCheckCommand): any worker image has
      // node, wherever it installed keeper, and needs neither a shell nor curl.
      healthCheck: workerHealthCheck(protocol),
      // The doorbell (UDP, worker to worker): a node that hands tasks over rings the receiver so
      // that it starts them at once rather than at its next heartbeat. Allowed only between
      // the workers' own tasks (below); without it, handovers wait for that heartbeat.
      portMappings: [{ containerPort: doorbellPort, protocol: ecs.Protocol.UDP }],
      logging: ecs.LogDrivers.awsLogs({ logGroup: workerLogs, streamPrefix: 'worker' }),
      // ECS sends SIGTERM on scale-in and deployments; the worker then hands its tasks to its
      // peers and marks itself gone, which takes a few periods. Give it all Fargate allows:
      // the process exits as soon as it is done.
      stopTimeout: fargateMaxStopTimeout,
      readonlyRootFilesystem: true,
    });
    // A deployment's new workers publish a version the old ones do not (a new image asset has
    // a new hash), and the old ones hand their tasks straight to them (docs/deploy.md).
    worker.addEnvironment('KEEPER_APP_VERSION', props.appVersion ?? worker.imageName);
    grantTableAccess(this.table, taskDefinition.taskRole, tableAccess.worker);

    this.service = new ecs.FargateService(this, 'Workers', {
      cluster: this.cluster,
      taskDefinition,
      // No desired count: autoscaling owns it, and a deployment must not reset it to a
      // constant (which would make workers leave and rejoin for nothing).
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
      assignPublicIp: ownVpc,
      vpcSubnets: props.vpcSubnets ?? { subnetType: ownVpc ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS },
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
    this.service.connections.allowInternally(ec2.Port.udp(doorbellPort), 'keeper doorbell: workers ring each other on handovers');
    this.service
      .autoScaleTaskCount({ minCapacity: settings.minWorkers, maxCapacity: settings.maxWorkers })
      .scaleOnCpuUtilization('CpuScaling', {
        targetUtilizationPercent: settings.cpuTargetPercent,
        // Scale in slowly: each removed worker hands its tasks over, which is cheap but not free.
        scaleInCooldown: Duration.minutes(5),
        scaleOutCooldown: Duration.minutes(1),
      });

    // ------------------------------------------------------------ task API
    const fn = (name: string, handler: string, description: string, access: (typeof tableAccess)[keyof typeof tableAccess]) => {
      const f = new KeeperFunction(this, name, {
        bundle: 'task-api',
        handler,
        description,
        environment: { KEEPER_TABLE: tableName },
        timeout: Duration.seconds(10),
        logRetention,
        removalPolicy,
      });
      grantTableAccess(this.table, f.role, access);
      return f;
    };
    this.taskFunctions = {
      create: fn('CreateTask', 'create', 'keeper task API: create a task', tableAccess.createTask),
      get: fn('GetTask', 'get', 'keeper task API: get a task', tableAccess.getTask),
      list: fn('ListTasks', 'list', 'keeper task API: list tasks', tableAccess.listTasks),
      update: fn('UpdateTask', 'update', "keeper task API: update a task's payload", tableAccess.updateTask),
      remove: fn('DeleteTask', 'remove', 'keeper task API: delete a task', tableAccess.deleteTask),
      release: fn('ReleaseTask', 'release', 'keeper task API: force-release a task', tableAccess.releaseTask),
    };
    this.drainFunction = fn('DrainNode', 'drain', 'keeper task API: drain a worker node, or end its drain', tableAccess.drainNode);

    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', { retention: logRetention, removalPolicy });
    this.api = new apigwv2.HttpApi(this, 'TaskApi', {
      description: 'keeper task API (IAM-authorised)',
      defaultAuthorizer: new HttpIamAuthorizer(),
      createDefaultStage: false,
    });
    const stage = new apigwv2.HttpStage(this, 'TaskApiStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      accessLogSettings: { destination: new apigwv2.LogGroupLogDestination(accessLogs), format: AccessLogFormat.jsonWithStandardFields() },
      throttle: { rateLimit: 50, burstLimit: 100 },
    });
    this.apiUrl = stage.url;
    const route = (path: string, method: apigwv2.HttpMethod, f: KeeperFunction) =>
      this.api.addRoutes({ path, methods: [method], integration: new HttpLambdaIntegration(`${f.node.id}Integration`, f.function) });
    route('/tasks', apigwv2.HttpMethod.POST, this.taskFunctions.create);
    route('/tasks', apigwv2.HttpMethod.GET, this.taskFunctions.list);
    // Greedy: task ids may contain "/". POST on a task path is only ever ".../release".
    route('/tasks/{id+}', apigwv2.HttpMethod.GET, this.taskFunctions.get);
    route('/tasks/{id+}', apigwv2.HttpMethod.PATCH, this.taskFunctions.update);
    route('/tasks/{id+}', apigwv2.HttpMethod.DELETE, this.taskFunctions.remove);
    route('/tasks/{id+}', apigwv2.HttpMethod.POST, this.taskFunctions.release);
    // Node ids have no "/": a plain path parameter. One function (one integration) for both.
    const drain = new HttpLambdaIntegration('DrainNodeIntegration', this.drainFunction.function);
    for (const path of ['/nodes/{id}/drain', '/nodes/{id}/undrain']) this.api.addRoutes({ path, methods: [apigwv2.HttpMethod.POST], integration: drain });

    // ------------------------------------------------------------ health check
    this.healthFunction = new KeeperFunction(this, 'Health', {
      bundle: 'health',
      handler: 'handler',
      description: 'keeper health check: live nodes and orphaned tasks, every minute',
      environment: shared,
      timeout: settings.healthTimeout,
      logRetention,
      removalPolicy,
    });
    grantTableAccess(this.table, this.healthFunction.role, tableAccess.health);
    new events.Rule(this, 'HealthSchedule', {
      description: 'Runs the keeper health check every minute',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed minute is better than two checks of the same minute.
      targets: [new targets.LambdaFunction(this.healthFunction.function, { retryAttempts: 0, maxEventAge: Duration.minutes(1) })],
    });

    // ------------------------------------------------------------ alarms
    const alarmKey = new kms.Key(this, 'AlarmTopicKey', {
      description: 'Encrypts the keeper alarm topic',
      enableKeyRotation: true,
      removalPolicy,
      ...(removalPolicy === RemovalPolicy.DESTROY ? { pendingWindow: Duration.days(7) } : {}),
    });
    // CloudWatch publishes the alarms: it needs the key (the AWS-managed SNS key would refuse it).
    alarmKey.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { displayName: 'keeper alarms', masterKey: alarmKey, enforceSSL: true });
    for (const email of props.alarmEmails ?? []) this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(email));

    this.monitoring = new KeeperMonitoring(this, 'Monitoring', {
      ...settings.alarms,
      namespace,
      service: tableName,
      topic: this.alarmTopic,
      workers: this.service,
      health: this.healthFunction.function,
      api: [...Object.values(this.taskFunctions), this.drainFunction].map((f) => f.function),
    });

    this.suppressFindings(taskDefinition);
  }

  /**
   * A VPC that costs nothing while idle: public subnets in two zones, no NAT gateway (workers
   * get public IPs and accept no inbound traffic), and a gateway endpoint so that heartbeats
   * reach DynamoDB without leaving AWS's network. Rejected traffic is logged.
   */
  private createVpc(logRetention: logs.RetentionDays, removalPolicy: RemovalPolicy): ec2.Vpc {
    const flowLogs = new logs.LogGroup(this, 'VpcFlowLogs', { retention: logRetention, removalPolicy });
    return new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC }],
      gatewayEndpoints: { DynamoDb: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB } },
      flowLogs: { rejected: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.REJECT } },
    });
  }

  /** cdk-nag findings that are deliberate, each acknowledged with the reason it is acceptable. */
  private suppressFindings(taskDefinition: ecs.FargateTaskDefinition): void {
    Validations.of(taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason:
        'The environment holds only the table name, protocol settings and metric settings, none of them secret; ' +
        'a user image that needs secrets should take them from Secrets Manager through ECS secrets.',
    });
    if (taskDefinition.executionRole) {
      Validations.of(taskDefinition.executionRole).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'ecr:GetAuthorizationToken has no resource-level permissions: AWS requires Resource "*" for it. Image pulls themselves are scoped to the image repository.',
      });
    }
  }
}

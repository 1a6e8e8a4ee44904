import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { metricNames } from '../metrics.js';

/** Thresholds of the cluster's alarms. */
export interface AlarmSettings {
  /** Nodes declared dead within one minute that raise the failover alarm; default 1 (any failover). */
  failoverThreshold: number;
  /** Minutes a task may stay without a live owner before the orphan alarm fires; default 5. */
  orphanedMinutes: number;
  /** Share of heartbeats that may fail over five minutes, in percent; default 10. */
  heartbeatFailurePercent: number;
}

/** Props of KeeperMonitoring: what it watches and where alarms go. */
export interface MonitoringProps extends AlarmSettings {
  namespace: string;
  /** The `service` dimension: the table name, which workers and the health function publish under. */
  service: string;
  topic: sns.ITopic;
  workers: ecs.FargateService;
  health: lambda.IFunction;
  api: lambda.IFunction[];
}

/**
 * The alarms and the dashboard. Worker metrics (failovers, heartbeats, fencing) come from
 * every worker through EMF; cluster metrics (live nodes, orphans) from the health function,
 * which also keeps publishing when no worker is left to. Each alarm tells the topic when it
 * fires and when it clears; docs/deploy.md says what to do about each.
 */
export class KeeperMonitoring extends Construct {
  readonly failover: cloudwatch.Alarm;
  readonly orphanedTasks: cloudwatch.Alarm;
  readonly noLiveWorkers: cloudwatch.Alarm;
  readonly heartbeatFailures: cloudwatch.Alarm;
  readonly selfFencing: cloudwatch.Alarm;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const metric = (name: string, statistic: string, period = Duration.minutes(1)) =>
      new cloudwatch.Metric({ namespace: props.namespace, metricName: name, dimensionsMap: { service: props.service }, statistic, period });

    const declaredDead = metric(metricNames.nodeDeclaredDead, 'Sum');
    const takenOver = metric(metricNames.tasksTakenOver, 'Sum');
    const takeoverP50 = metric(metricNames.takeoverLatency, 'p50');
    const takeoverMax = metric(metricNames.takeoverLatency, 'Maximum');
    const liveNodes = metric(metricNames.liveNodes, 'Maximum');
    const staleNodes = metric(metricNames.staleNodes, 'Maximum');
    const orphaned = metric(metricNames.orphanedTasks, 'Minimum');
    const oldestOrphan = metric(metricNames.oldestOrphanedTaskAge, 'Maximum');
    const unplaceable = metric(metricNames.unplaceableTasks, 'Maximum');
    const ownedTasks = metric(metricNames.ownedTasks, 'Sum');
    const ownedPerWorkerMax = metric(metricNames.ownedTasks, 'Maximum');
    const readyTasks = metric(metricNames.readyTasks, 'Maximum');
    const failedTasks = metric(metricNames.failedTasks, 'Maximum');

    const fiveMinutes = Duration.minutes(5);
    const heartbeatFailureRate = new cloudwatch.MathExpression({
      // Attempts come from the counter's progress, so failures / attempts is a true rate.
      expression: '100 * FILL(failures, 0) / attempts',
      usingMetrics: { failures: metric(metricNames.heartbeatFailures, 'Sum', fiveMinutes), attempts: metric(metricNames.heartbeats, 'Sum', fiveMinutes) },
      period: fiveMinutes,
      label: 'Heartbeat failures (%)',
    });
    const fencingEvents = new cloudwatch.MathExpression({
      expression: 'FILL(fenced, 0) + FILL(zombie, 0)',
      usingMetrics: { fenced: metric(metricNames.selfFenced, 'Sum'), zombie: metric(metricNames.declaredDeadWhileAlive, 'Sum') },
      period: Duration.minutes(1),
      label: 'Self-fencing events',
    });

    this.failover = declaredDead.createAlarm(this, 'Failover', {
      alarmDescription:
        `A node was declared dead and its tasks were handed to other nodes (at least ${props.failoverThreshold} in a minute). ` +
        'Check why the node stopped: ECS stopped-task reason, its last log lines. See docs/deploy.md#alarms.',
      threshold: props.failoverThreshold,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.orphanedTasks = orphaned.createAlarm(this, 'OrphanedTasks', {
      alarmDescription:
        `Some ready task has had no live owner at every health check for ${props.orphanedMinutes} minutes. ` +
        'Likely: no worker runs its type, all workers are full (capacity), or takeover is failing. See docs/deploy.md#alarms.',
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // The health check samples once a minute: N breaching samples in a row = N minutes.
      evaluationPeriods: props.orphanedMinutes,
      datapointsToAlarm: props.orphanedMinutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.noLiveWorkers = liveNodes.createAlarm(this, 'NoLiveWorkers', {
      alarmDescription:
        'No worker counter advanced during two health checks in a row, or the health check itself stopped reporting. ' +
        'No task is running. Check the ECS service events and the health function log. See docs/deploy.md#alarms.',
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      // Silence is the symptom here: a health check that stopped reporting is as bad as zero.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    this.heartbeatFailures = new cloudwatch.Alarm(this, 'HeartbeatFailureRate', {
      alarmDescription:
        `More than ${props.heartbeatFailurePercent}% of heartbeats failed over five minutes: workers are close to self-fencing. ` +
        'Check DynamoDB throttling and errors, and the workers network path. See docs/deploy.md#alarms.',
      metric: heartbeatFailureRate,
      threshold: props.heartbeatFailurePercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.selfFencing = new cloudwatch.Alarm(this, 'SelfFencing', {
      alarmDescription:
        'A worker stopped its tasks because its lease ran out, or learnt it had been declared dead while still running. ' +
        'Its tasks moved or will move; find the cause (pauses, CPU starvation, DynamoDB latency). See docs/deploy.md#alarms.',
      metric: fencingEvents,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const notify = new actions.SnsAction(props.topic);
    const alarms = [this.failover, this.orphanedTasks, this.noLiveWorkers, this.heartbeatFailures, this.selfFencing];
    for (const alarm of alarms) {
      alarm.addAlarmAction(notify);
      alarm.addOkAction(notify);
    }

    const apiErrors = props.api.map((fn) => fn.metricErrors({ period: Duration.minutes(1) }));
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms, width: 24, height: 3 })],
        [
          new cloudwatch.GraphWidget({ title: 'Live and stale nodes (health check)', left: [liveNodes, staleNodes], width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Failovers and tasks taken over', left: [declaredDead], right: [takenOver], width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Takeover latency (ms)', left: [takeoverP50, takeoverMax], width: 8 }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Orphaned tasks', left: [orphaned, unplaceable], right: [oldestOrphan], rightYAxis: { label: 'oldest (s)', showUnits: false }, width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Heartbeat failure rate (%)', left: [heartbeatFailureRate], leftYAxis: { min: 0, max: 100 }, width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Self-fencing events', left: [fencingEvents], width: 8 }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Tasks: owned (all workers), most on one worker', left: [ownedTasks], right: [ownedPerWorkerMax], width: 8 }),
          new cloudwatch.GraphWidget({ title: 'Tasks: ready and failed', left: [readyTasks, failedTasks], width: 8 }),
          new cloudwatch.GraphWidget({
            title: 'Workers: CPU and running count',
            left: [props.workers.metricCpuUtilization({ period: Duration.minutes(1) })],
            right: [
              new cloudwatch.Metric({
                namespace: 'ECS/ContainerInsights',
                metricName: 'RunningTaskCount',
                dimensionsMap: { ClusterName: props.workers.cluster.clusterName, ServiceName: props.workers.serviceName },
                statistic: 'Average',
                period: Duration.minutes(1),
              }),
            ],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Health check errors', left: [props.health.metricErrors({ period: Duration.minutes(1) })], width: 12 }),
          new cloudwatch.GraphWidget({ title: 'Task API function errors', left: apiErrors, width: 12 }),
        ],
      ],
    });
  }
}

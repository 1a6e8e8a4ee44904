import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Timer } from './clock.js';
import { errorText } from './log.js';
import type { Worker } from './worker.js';

/**
 * CloudWatch metrics of a keeper cluster, in Embedded Metric Format through Powertools
 * Metrics: each batch is one JSON line on stdout, which CloudWatch Logs turns into metrics
 * (the awslogs driver on ECS, the runtime on Lambda). No PutMetricData calls, so a worker
 * whose network is failing never blocks on its own telemetry.
 *
 * Every metric carries one dimension, `service`, whose value names the cluster (KeeperCluster
 * sets POWERTOOLS_SERVICE_NAME to the table name). No per-node dimension: nodes come and go
 * with every deployment, and the alarms are about the cluster. The node id rides along as
 * EMF metadata, so Logs Insights can still tell which node said what.
 */

/** The namespace the alarms of infra/ read unless told otherwise. */
export const metricsNamespace = 'Keeper';

/** Metric names, written down once for the workers, the health function and the alarms. */
export const metricNames = {
  // published by every worker (attachMetrics)
  nodeDeclaredDead: 'NodeDeclaredDead',
  tasksTakenOver: 'TasksTakenOver',
  takeoverLatency: 'TakeoverLatency',
  heartbeats: 'Heartbeats',
  heartbeatFailures: 'HeartbeatFailures',
  eventLoopStalls: 'EventLoopStalls',
  selfFenced: 'SelfFenced',
  declaredDeadWhileAlive: 'DeclaredDeadWhileAlive',
  ownedTasks: 'OwnedTasks',
  nodeJoined: 'NodeJoined',
  nodeLeft: 'NodeLeft',
  taskRunsStarted: 'TaskRunsStarted',
  taskRunsFailed: 'TaskRunsFailed',
  // published by the health function, which sees the whole table
  liveNodes: 'LiveNodes',
  staleNodes: 'StaleNodes',
  orphanedTasks: 'OrphanedTasks',
  oldestOrphanedTaskAge: 'OldestOrphanedTaskAge',
  unplaceableTasks: 'UnplaceableTasks',
  readyTasks: 'ReadyTasks',
  failedTasks: 'FailedTasks',
} as const;

/** Options of attachMetrics. */
export interface MetricsOptions {
  /** CloudWatch namespace; default $POWERTOOLS_METRICS_NAMESPACE, else "Keeper". */
  namespace?: string;
  /** Value of the `service` dimension; default $POWERTOOLS_SERVICE_NAME. */
  service?: string;
  /** How often buffered counts and the owned-tasks gauge are published, on the worker's clock; default 60 s. */
  intervalMs?: number;
  /** Publish through this Powertools instance instead of a new one (namespace and service are then its own). */
  metrics?: Metrics;
  /** Told about a failure inside the metrics code; default a line on stderr. */
  onError?: (message: string) => void;
}

/** Publishes what is buffered, stops the timer and unsubscribes. Safe to call more than once. */
export type DetachMetrics = () => void;

/**
 * Subscribes to a worker's events and publishes them as CloudWatch metrics.
 *
 * Rare events that matter (a node declared dead, a takeover, self-fencing, a join or a leave)
 * are published at once, so that an alarm sees them within its minute and a process that
 * dies right after still got them out. Frequent ones (heartbeat failures, task runs) are
 * buffered and go out with the periodic gauge. The worker's 'left' event publishes a last
 * time and detaches, so a worker that stops gracefully loses nothing.
 */
export function attachMetrics(worker: Worker, options: MetricsOptions = {}): DetachMetrics {
  const intervalMs = options.intervalMs ?? 60_000;
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) throw new RangeError(`intervalMs must be a positive number of milliseconds, got ${intervalMs}`);
  const onError = options.onError ?? ((message: string) => process.stderr.write(`${message}\n`));
  const metrics =
    options.metrics ??
    new Metrics({
      namespace: options.namespace ?? process.env['POWERTOOLS_METRICS_NAMESPACE'] ?? metricsNamespace,
      ...(options.service !== undefined ? { serviceName: options.service } : {}),
    });

  // Heartbeats attempted, the denominator of the failure rate: the counter moves once per
  // heartbeat that landed, and each failed attempt is counted as it happens.
  let counterSeen = worker.snapshot().counter;
  let timer: Timer | undefined;
  let detached = false;

  const publish = () => {
    if (!metrics.hasStoredMetrics()) return;
    metrics.addMetadata('node', worker.id);
    metrics.publishStoredMetrics();
  };

  const sample = () => {
    const snapshot = worker.snapshot();
    if (snapshot.phase === 'running') metrics.addMetric(metricNames.ownedTasks, MetricUnit.Count, snapshot.tasks.length);
    const beats = snapshot.counter - counterSeen;
    if (beats > 0) metrics.addMetric(metricNames.heartbeats, MetricUnit.Count, beats);
    counterSeen = snapshot.counter;
  };

  // A listener that throws would throw inside the worker's own loop: metrics must never be
  // able to break coordination, so every handler is fenced off here.
  const guarded =
    <A extends unknown[]>(what: string, fn: (...args: A) => void) =>
    (...args: A) => {
      try {
        fn(...args);
      } catch (error) {
        onError(`metrics: ${what} failed: ${errorText(error)}`);
      }
    };

  const periodic = guarded('periodic publish', () => {
    sample();
    publish();
  });
  const schedule = () => {
    timer = worker.clock.setTimer(intervalMs, () => {
      if (detached) return;
      periodic();
      schedule(); // even after a failed publish: the next one may well succeed
    });
  };

  const listeners = {
    joined: guarded('joined', () => {
      counterSeen = worker.snapshot().counter;
      metrics.addMetric(metricNames.nodeJoined, MetricUnit.Count, 1);
      publish();
    }),
    'declared-dead': guarded('declared-dead', () => {
      metrics.addMetric(metricNames.nodeDeclaredDead, MetricUnit.Count, 1);
      publish();
    }),
    takeover: guarded('takeover', ({ tasks, moved, ms }: { tasks: number; moved: number; ms: number }) => {
      metrics.addMetric(metricNames.tasksTakenOver, MetricUnit.Count, moved);
      // A takeover of nothing says nothing about how long moving tasks takes.
      if (tasks > 0) metrics.addMetric(metricNames.takeoverLatency, MetricUnit.Milliseconds, ms);
      publish();
    }),
    'heartbeat-failed': guarded('heartbeat-failed', () => {
      metrics.addMetric(metricNames.heartbeatFailures, MetricUnit.Count, 1);
      metrics.addMetric(metricNames.heartbeats, MetricUnit.Count, 1);
    }),
    stalled: guarded('stalled', () => {
      metrics.addMetric(metricNames.eventLoopStalls, MetricUnit.Count, 1);
    }),
    fenced: guarded('fenced', () => {
      metrics.addMetric(metricNames.selfFenced, MetricUnit.Count, 1);
      publish();
    }),
    zombie: guarded('zombie', () => {
      metrics.addMetric(metricNames.declaredDeadWhileAlive, MetricUnit.Count, 1);
      publish();
    }),
    'task-started': guarded('task-started', () => {
      metrics.addMetric(metricNames.taskRunsStarted, MetricUnit.Count, 1);
    }),
    'task-ended': guarded('task-ended', ({ outcome }: { outcome: string }) => {
      if (outcome === 'failed') metrics.addMetric(metricNames.taskRunsFailed, MetricUnit.Count, 1);
    }),
    left: guarded('left', () => {
      metrics.addMetric(metricNames.nodeLeft, MetricUnit.Count, 1);
      detach();
    }),
  };

  const detach: DetachMetrics = () => {
    if (detached) return;
    detached = true;
    timer?.cancel();
    worker.off('joined', listeners.joined);
    worker.off('declared-dead', listeners['declared-dead']);
    worker.off('takeover', listeners.takeover);
    worker.off('heartbeat-failed', listeners['heartbeat-failed']);
    worker.off('stalled', listeners.stalled);
    worker.off('fenced', listeners.fenced);
    worker.off('zombie', listeners.zombie);
    worker.off('task-started', listeners['task-started']);
    worker.off('task-ended', listeners['task-ended']);
    worker.off('left', listeners.left);
    try {
      sample();
      publish();
    } catch (error) {
      onError(`metrics: final publish failed: ${errorText(error)}`);
    }
  };

  worker.on('joined', listeners.joined);
  worker.on('declared-dead', listeners['declared-dead']);
  worker.on('takeover', listeners.takeover);
  worker.on('heartbeat-failed', listeners['heartbeat-failed']);
  worker.on('stalled', listeners.stalled);
  worker.on('fenced', listeners.fenced);
  worker.on('zombie', listeners.zombie);
  worker.on('task-started', listeners['task-started']);
  worker.on('task-ended', listeners['task-ended']);
  worker.on('left', listeners.left);
  schedule();
  return detach;
}

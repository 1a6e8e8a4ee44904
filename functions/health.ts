import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { TaskAdmin } from '../lib/admin.js';
import { sleep, systemClock, type Clock } from '../lib/clock.js';
import { healthWindowMs, type KeeperConfig } from '../lib/config.js';
import { metricNames, metricsNamespace } from '../lib/metrics.js';
import type { Store, TaskItem } from '../lib/store/store.js';
import { configFromEnv, storeFromEnv } from './environment.js';

/**
 * The cluster's health as only an outside observer can see it, run by EventBridge once a
 * minute. Workers publish what they do; when every worker is dead none of them publishes
 * anything, and a crashed node's item still says "alive" until a peer declares it dead,
 * which no peer does if there is none. So liveness is judged here the way peers judge it:
 * by watching counters advance, never by comparing clocks.
 *
 *  - live node:    state alive, and its counter moved while we watched;
 *  - stale node:   state alive, but its counter stood still for the whole window;
 *  - orphaned task: a ready task with no live owner (none, a node that is not live, or an
 *                   older incarnation of a live one) whose ownership did not change for the
 *                   whole window either. The window is the failover bound, so a task that
 *                   is merely waiting for its takeover or its first claim is not counted.
 */
export interface ClusterHealth {
  liveNodes: number;
  staleNodes: number;
  orphanedTasks: number;
  /**
   * Free ready tasks that no live node could take whatever its load (heavier than every
   * capacity, or a type nobody runs), as the check's first read saw them: they count among
   * the orphaned tasks too once they have waited the window; this says why.
   */
  unplaceableTasks: number;
  /** Age (since createdAt) of the oldest orphaned task, in seconds; 0 when there is none. */
  oldestOrphanedTaskAgeSeconds: number;
  readyTasks: number;
  failedTasks: number;
  /** How long the check watched, in milliseconds. */
  watchedMs: number;
}

export interface HealthCheckOptions {
  store: Store;
  /** The workers' protocol settings: the window is their failover bound, index lag included (healthWindowMs). */
  config: KeeperConfig;
  clock?: Clock;
  /** Wall clock, only to age tasks by their createdAt. */
  now?: () => Date;
}

const readConcurrency = 16;

export async function checkHealth(options: HealthCheckOptions): Promise<ClusterHealth> {
  const { store, config } = options;
  const clock = options.clock ?? systemClock;
  const now = options.now ?? (() => new Date());
  const startedAt = clock.now();
  const deadline = startedAt + healthWindowMs(config);

  const { nodes, tasks, unplaceable } = await new TaskAdmin(store).status();
  const firstSeen = new Map(nodes.filter((n) => n.state === 'alive').map((n) => [n.id, n]));
  const live = new Map<string, number>(); // node id -> live incarnation

  // Watch the counters, one period at a time, until every node has moved or the window ends.
  let watching = [...firstSeen.keys()];
  while (watching.length > 0 && clock.now() < deadline) {
    await sleep(clock, Math.min(config.periodMs, deadline - clock.now()));
    const { nodes: current } = await store.readNodes(watching);
    for (const id of watching) {
      const before = firstSeen.get(id)!;
      const after = current.get(id);
      if (after?.state === 'alive' && (after.inc !== before.inc || after.counter !== before.counter)) live.set(id, after.inc);
    }
    watching = watching.filter((id) => !live.has(id) && current.get(id)?.state === 'alive');
  }

  const hasLiveOwner = (task: TaskItem) => task.owner !== null && live.get(task.owner) === task.ownerInc;
  const ready = tasks.filter((t) => t.state === 'ready');
  const candidates = ready.filter((t) => !hasLiveOwner(t));
  // A candidate counts only if it is still without a live owner at the end of the window
  // and nobody moved it meanwhile (same fencing token).
  if (candidates.length > 0 && clock.now() < deadline) await sleep(clock, deadline - clock.now());
  const orphaned = await stillOrphaned(store, candidates, hasLiveOwner);

  const ageMs = orphaned.map((t) => now().getTime() - Date.parse(t.createdAt)).filter((ms) => Number.isFinite(ms));
  return {
    liveNodes: live.size,
    // Still alive in the table and never seen moving (nodes declared dead meanwhile dropped out).
    staleNodes: watching.length,
    orphanedTasks: orphaned.length,
    unplaceableTasks: unplaceable.length,
    oldestOrphanedTaskAgeSeconds: ageMs.length > 0 ? Math.max(0, Math.round(Math.max(...ageMs) / 1000)) : 0,
    readyTasks: ready.length,
    failedTasks: tasks.filter((t) => t.state === 'failed').length,
    watchedMs: clock.now() - startedAt,
  };
}

async function stillOrphaned(store: Store, candidates: TaskItem[], hasLiveOwner: (task: TaskItem) => boolean): Promise<TaskItem[]> {
  const orphaned: TaskItem[] = [];
  let next = 0;
  const lanes = Array.from({ length: Math.min(readConcurrency, candidates.length) }, async () => {
    while (next < candidates.length) {
      const before = candidates[next++]!;
      const after = await store.getTask(before.id);
      if (after && after.state === 'ready' && after.token === before.token && !hasLiveOwner(after)) orphaned.push(after);
    }
  });
  await Promise.all(lanes);
  return orphaned;
}

/** Adds the health figures to a Powertools Metrics instance, to be published with it. */
export function recordHealth(metrics: Metrics, health: ClusterHealth): void {
  metrics.addMetric(metricNames.liveNodes, MetricUnit.Count, health.liveNodes);
  metrics.addMetric(metricNames.staleNodes, MetricUnit.Count, health.staleNodes);
  metrics.addMetric(metricNames.orphanedTasks, MetricUnit.Count, health.orphanedTasks);
  metrics.addMetric(metricNames.unplaceableTasks, MetricUnit.Count, health.unplaceableTasks);
  metrics.addMetric(metricNames.oldestOrphanedTaskAge, MetricUnit.Seconds, health.oldestOrphanedTaskAgeSeconds);
  metrics.addMetric(metricNames.readyTasks, MetricUnit.Count, health.readyTasks);
  metrics.addMetric(metricNames.failedTasks, MetricUnit.Count, health.failedTasks);
}

// The service dimension comes from POWERTOOLS_SERVICE_NAME, which KeeperCluster sets to the
// table name for the workers and for this function alike.
const metrics = new Metrics({ namespace: process.env['POWERTOOLS_METRICS_NAMESPACE'] ?? metricsNamespace });

export const handler = middy<ScheduledEvent, ClusterHealth, Error, Context>()
  .use(logMetrics(metrics))
  .handler(async () => {
    const health = await checkHealth({ store: storeFromEnv(), config: configFromEnv() });
    recordHealth(metrics, health);
    // One log line a minute that says the same in words, for whoever reads the log.
    console.info(JSON.stringify({ msg: 'cluster health', ...health }));
    return health;
  });

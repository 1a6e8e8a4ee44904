import type { KeeperOptions } from './config.js';
import { InvalidLabelError, parseLabelList, type Labels } from './labels.js';

/**
 * The environment a worker reads: the names `KeeperCluster` sets on every worker container,
 * and the ones `keeper worker` and `runWorker` honour. Written down once, here, so the
 * construct, the CLI and the library cannot drift apart.
 *
 * | variable | setting |
 * |---|---|
 * | `KEEPER_TABLE` | the table (required unless a store or table is given) |
 * | `KEEPER_PERIOD_MS`, `KEEPER_STALE_TICKS`, `KEEPER_DRIFT_BOUND`, `KEEPER_FENCE_MS` | the protocol settings |
 * | `KEEPER_CAPACITY`, `KEEPER_INBOX_POLL_MS` | most tasks per node; inbox polling |
 * | `KEEPER_LEAVE_TIMEOUT_MS` | how long a graceful leave waits for handlers that ignore their signal |
 * | `KEEPER_MOVE_WRITE_UNITS_PER_SECOND` | write units per second this node's task moves may spend (0: no limit) |
 * | `KEEPER_MAX_STARTS_PER_SECOND` | task runs this node starts per second at most, highest priority first (0: no limit) |
 * | `KEEPER_DOORBELL_PORT`, `KEEPER_DOORBELL_HOST`, `KEEPER_DOORBELL` (`on`/`off`) | the doorbell |
 * | `KEEPER_NODE_ID` | the node id (default: host, pid and a random suffix) |
 * | `KEEPER_LABELS` | labels this node publishes, `key=value,key=value`, which tasks may require or prefer; on ECS the task's availability zone is added as `zone` unless given (ecsAvailabilityZone) |
 * | `KEEPER_APP_VERSION` | the application version this worker runs: placement prefers the newest present, so a deploy moves each task once (KeeperCluster sets it) |
 * | `KEEPER_METRICS` (`emf`/`off`) | publish metrics in Embedded Metric Format |
 * | `KEEPER_HEALTH_PORT` | serve the worker's health on 127.0.0.1 at this port, for `keeper health` and the container health check (KeeperCluster sets 7071); unset: no endpoint |
 * | `KEEPER_HANDLERS` | `keeper worker` only: the handler module to load |
 * | `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION` | where DynamoDB is (the AWS SDK's own names) |
 */
export const workerEnvironment = {
  table: 'KEEPER_TABLE',
  numbers: {
    KEEPER_PERIOD_MS: 'periodMs',
    KEEPER_STALE_TICKS: 'staleTicks',
    KEEPER_DRIFT_BOUND: 'driftBound',
    KEEPER_FENCE_MS: 'fenceMs',
    KEEPER_CAPACITY: 'capacity',
    KEEPER_INBOX_POLL_MS: 'inboxPollMs',
    KEEPER_LEAVE_TIMEOUT_MS: 'leaveTimeoutMs',
    KEEPER_MOVE_WRITE_UNITS_PER_SECOND: 'moveWriteUnitsPerSecond',
    KEEPER_MAX_STARTS_PER_SECOND: 'maxStartsPerSecond',
    KEEPER_DOORBELL_PORT: 'doorbellPort',
  },
  doorbellHost: 'KEEPER_DOORBELL_HOST',
  doorbell: 'KEEPER_DOORBELL',
  nodeId: 'KEEPER_NODE_ID',
  appVersion: 'KEEPER_APP_VERSION',
  labels: 'KEEPER_LABELS',
  metrics: 'KEEPER_METRICS',
  healthPort: 'KEEPER_HEALTH_PORT',
  handlers: 'KEEPER_HANDLERS',
} as const satisfies { numbers: Record<string, keyof KeeperOptions> } & Record<string, unknown>;

/** A variable of the worker environment has a value that cannot be used; the message names it and what it accepts. */
export class EnvironmentError extends Error {
  override name = 'EnvironmentError';
}

/** What the environment says about a worker. Absent variables are absent here. */
export interface WorkerEnvironmentSettings {
  settings: KeeperOptions;
  table?: string;
  /** Whether KEEPER_METRICS asks for EMF metrics. */
  metrics?: boolean;
  /** KEEPER_HANDLERS. */
  handlers?: string;
  /** KEEPER_HEALTH_PORT: where the worker serves its health (workerHealth), on 127.0.0.1. */
  healthPort?: number;
}

/** Reads the worker environment; refuses a malformed value with an {@link EnvironmentError}. */
export function readWorkerEnvironment(env: NodeJS.ProcessEnv = process.env): WorkerEnvironmentSettings {
  const settings: KeeperOptions = {};
  const given = (name: string) => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  for (const [name, key] of Object.entries(workerEnvironment.numbers)) {
    const value = given(name);
    if (value === undefined) continue;
    const n = Number(value);
    if (!Number.isFinite(n)) throw new EnvironmentError(`${name} must be a number, got "${value}"`);
    (settings as Record<string, unknown>)[key] = n;
  }
  const host = given(workerEnvironment.doorbellHost);
  if (host !== undefined) settings.doorbellHost = host;
  const doorbell = given(workerEnvironment.doorbell)?.toLowerCase();
  if (doorbell !== undefined) {
    if (!['on', 'off', 'true', 'false', '1', '0'].includes(doorbell)) throw new EnvironmentError(`KEEPER_DOORBELL must be on or off, got "${env[workerEnvironment.doorbell]}"`);
    settings.doorbell = ['on', 'true', '1'].includes(doorbell);
  }
  const nodeId = given(workerEnvironment.nodeId);
  if (nodeId !== undefined) settings.nodeId = nodeId;
  const appVersion = given(workerEnvironment.appVersion);
  if (appVersion !== undefined) settings.appVersion = appVersion;
  const labels = given(workerEnvironment.labels);
  if (labels !== undefined) {
    try {
      const parsed = parseLabelList(labels, workerEnvironment.labels);
      if (Object.keys(parsed).length > 0) settings.labels = parsed;
    } catch (error) {
      if (error instanceof InvalidLabelError) throw new EnvironmentError(error.message);
      throw error;
    }
  }
  const metrics = given(workerEnvironment.metrics)?.toLowerCase();
  if (metrics !== undefined && metrics !== 'emf' && metrics !== 'off') throw new EnvironmentError(`KEEPER_METRICS must be emf or off, got "${env[workerEnvironment.metrics]}"`);
  const table = given(workerEnvironment.table);
  const handlers = given(workerEnvironment.handlers);
  const healthPort = given(workerEnvironment.healthPort);
  if (healthPort !== undefined && !(/^\d+$/.test(healthPort) && Number(healthPort) <= 65_535)) {
    throw new EnvironmentError(`KEEPER_HEALTH_PORT must be a port number from 0 (any free port) to 65535, got "${healthPort}"`);
  }
  return {
    settings,
    ...(table !== undefined ? { table } : {}),
    ...(metrics !== undefined ? { metrics: metrics === 'emf' } : {}),
    ...(handlers !== undefined ? { handlers } : {}),
    ...(healthPort !== undefined ? { healthPort: Number(healthPort) } : {}),
  };
}

/** How long a worker waits for the ECS task metadata endpoint before it starts without a zone label. */
export const ecsMetadataTimeoutMs = 1000;

/**
 * The availability zone an ECS task runs in, from the task metadata endpoint v4
 * (`$ECS_CONTAINER_METADATA_URI_V4/task`, field AvailabilityZone), for the `zone` label: so
 * that tasks can require or prefer a zone with no setting on KeeperCluster. Off ECS (no
 * endpoint in the environment): nothing. The endpoint is local to the task, so a short
 * timeout; a failure costs the label, never the start: it comes back as a `warning` to log.
 */
export async function ecsAvailabilityZone(env: NodeJS.ProcessEnv = process.env, timeoutMs = ecsMetadataTimeoutMs): Promise<{ zone?: string; warning?: string }> {
  const uri = env['ECS_CONTAINER_METADATA_URI_V4'];
  if (!uri) return {};
  const without = 'starting without a zone label (give one with --label zone=... or KEEPER_LABELS)';
  try {
    const reply = await fetch(`${uri}/task`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!reply.ok) return { warning: `the ECS task metadata endpoint answered ${reply.status}; ${without}` };
    const zone = ((await reply.json()) as { AvailabilityZone?: unknown }).AvailabilityZone;
    if (typeof zone !== 'string' || !/^[A-Za-z0-9._:/@+-]{1,128}$/.test(zone)) return { warning: `the ECS task metadata has no usable AvailabilityZone; ${without}` };
    return { zone };
  } catch (error) {
    const why = (error as { name?: string }).name === 'TimeoutError' ? `did not answer within ${timeoutMs} ms` : `could not be read (${(error as Error).message})`;
    return { warning: `the ECS task metadata endpoint ${why}; ${without}` };
  }
}

/** Labels with the ECS zone added as `zone`, unless the labels name a zone already. */
export function withZone(labels: Labels | undefined, zone: string | undefined): Labels | undefined {
  if (zone === undefined || labels?.['zone'] !== undefined) return labels;
  return { ...labels, zone };
}

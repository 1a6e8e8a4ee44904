import type { KeeperOptions } from './config.js';

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

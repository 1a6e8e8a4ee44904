import { resolveConfig } from './config.js';
import { ecsTaskAddress } from './doorbell.js';
import { errorText, jsonLogger, type Logger } from './log.js';
import type { MetricsOptions } from './metrics.js';
import { createNodeClients, documentClient, isValidEndpoint, resolveEndpoint, type NodeClients } from './store/client.js';
import { DynamoStore } from './store/dynamo-store.js';
import type { Store } from './store/store.js';
import { checkTable, TableSchemaMismatchError } from './store/table.js';
import { checkHandlers, registerHandlers, type TaskHandlers } from './task-handlers.js';
import { Worker, type WorkerOptions } from './worker.js';
import { ecsAvailabilityZone, EnvironmentError, readWorkerEnvironment, withZone } from './worker-environment.js';
import { serveHealth, type HealthEndpoint } from './worker-health.js';

/** Options of {@link runWorker}. Every one is optional but `handlers`; each given one wins over the environment. */
export interface RunWorkerOptions extends Partial<WorkerOptions> {
  /** Task type to handler, or to `{ handler, mode, maxAttempts }`. */
  handlers: TaskHandlers;
  /** The table; default `$KEEPER_TABLE`. Ignored when `store` is given. */
  table?: string;
  /** The DynamoDB endpoint; default `$AWS_ENDPOINT_URL_DYNAMODB`, else AWS's regional one. */
  endpoint?: string;
  /** The AWS region; default the SDK's (`$AWS_REGION`, the profile). */
  region?: string;
  /**
   * Publish metrics in Embedded Metric Format (Powertools): `true`, or options for it.
   * Default: when `$KEEPER_METRICS` is `emf` (KeeperCluster sets it).
   */
  metrics?: boolean | MetricsOptions;
  /**
   * Signals on which the worker leaves gracefully (hands its tasks over), then the process
   * exits 0; a second signal exits 1 at once. Default `['SIGTERM', 'SIGINT']`; `false` to
   * handle signals yourself (call `worker.stop()`).
   */
  signals?: NodeJS.Signals[] | false;
  /** Exit the process once a signal's leave is done; default true. Tests turn it off. */
  exitAfterLeave?: boolean;
  /** The environment to read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /**
   * Serve the worker's health (joined, with a valid lease) on 127.0.0.1 at this port, for
   * `keeper health` and the container health check; 0 picks a free port, `false` serves none.
   * Default: `$KEEPER_HEALTH_PORT` (KeeperCluster sets it), else none.
   */
  healthPort?: number | false;
}

/** The defaults of {@link runWorker}, in one place. */
export const runWorkerDefaults = {
  signals: ['SIGTERM', 'SIGINT'] as NodeJS.Signals[],
  exitAfterLeave: true,
  /** JSON lines on stderr: what CloudWatch Logs and `jq` read. */
  logger: (): Logger => jsonLogger((line) => process.stderr.write(line)),
};

/**
 * Runs a worker the way a deployment wants one, in one call: reads the `KEEPER_*`
 * environment that `KeeperCluster` sets (see `workerEnvironment`), builds the DynamoDB
 * client and store, a JSON logger on stderr, attaches metrics when asked, registers the
 * handlers, joins the cluster, and leaves gracefully on SIGTERM or SIGINT. Returns the
 * running worker.
 *
 * ```ts
 * import { runWorker } from 'keeper';
 * await runWorker({ handlers: { mailbox: pollMailbox, report: { handler: buildReport, mode: 'finite' } } });
 * ```
 *
 * Refuses bad settings before anything starts: an unsafe configuration (`ConfigError`), a
 * malformed environment variable or a missing table (`EnvironmentError`), a bad handler map
 * (`InvalidHandlersError`).
 */
export async function runWorker(options: RunWorkerOptions): Promise<Worker> {
  const { handlers, table: tableOption, endpoint: endpointOption, region, metrics, signals, exitAfterLeave, env = process.env, store: storeOption, logger: loggerOption, clock, random, doorbell, healthPort: healthOption, ...protocol } = options;
  const fromEnv = readWorkerEnvironment(env);
  const settings = { ...fromEnv.settings, ...definedOnly(protocol), ...(typeof doorbell === 'boolean' ? { doorbell } : {}) };
  const config = resolveConfig(settings); // refuses unsafe settings before anything starts
  if (config.doorbell && doorbell === undefined && settings.doorbellHost === undefined) {
    const address = await ecsTaskAddress(env);
    if (address) settings.doorbellHost = address;
  }
  checkHandlers(handlers);
  const healthPort = healthOption ?? fromEnv.healthPort;
  if (healthPort !== undefined && healthPort !== false && !(Number.isInteger(healthPort) && healthPort >= 0 && healthPort <= 65_535)) {
    throw new EnvironmentError(`healthPort must be a port number from 0 (any free port) to 65535, got ${healthPort}`);
  }
  const logger = loggerOption ?? runWorkerDefaults.logger();
  // On ECS the task's availability zone becomes the `zone` label, unless one was given.
  if (settings.labels?.['zone'] === undefined) {
    const { zone, warning } = await ecsAvailabilityZone(env);
    if (warning) logger.warn(warning);
    const labels = withZone(settings.labels, zone);
    if (labels) settings.labels = labels;
  }

  let clients: NodeClients | undefined;
  let table: string | undefined;
  let store: Store;
  if (storeOption) store = storeOption;
  else {
    table = tableOption ?? fromEnv.table;
    if (!table) throw new EnvironmentError('no table: set KEEPER_TABLE (KeeperCluster sets it for you) or pass { table }');
    const endpoint = resolveEndpoint(endpointOption ?? env['AWS_ENDPOINT_URL_DYNAMODB']);
    if (endpoint !== undefined && !isValidEndpoint(endpoint)) throw new EnvironmentError(`invalid DynamoDB endpoint "${endpoint}": expected a URL such as http://127.0.0.1:8000`);
    clients = createNodeClients({ ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}), requestTimeoutMs: config.requestTimeoutMs });
    store = new DynamoStore({
      client: documentClient(clients.client),
      heartbeatClient: documentClient(clients.heartbeatClient),
      table,
      requestTimeoutMs: config.requestTimeoutMs,
      warn: (m) => logger.warn(m),
    });
  }

  const worker = new Worker({
    ...settings,
    // A Doorbell object (the simulator's) is not a setting: it goes to the worker as it is.
    ...(doorbell !== undefined && typeof doorbell !== 'boolean' ? { doorbell } : {}),
    ...(clock ? { clock } : {}),
    ...(random ? { random } : {}),
    store,
    logger,
  });
  registerHandlers(worker, handlers);
  // Before the join, so that the orchestrator hears "not joined yet" rather than nothing.
  let health: HealthEndpoint | undefined;
  if (healthPort !== undefined && healthPort !== false) {
    try {
      health = await serveHealth(worker, { port: healthPort });
    } catch (error) {
      clients?.destroy();
      throw new Error(`cannot serve the health endpoint on 127.0.0.1:${healthPort}: ${errorText(error)}`);
    }
    logger.info('serving health', { node: worker.id, address: `127.0.0.1:${health.port}` });
  }
  // The clients and the endpoint are ours: close them once the node is gone, whoever stopped it.
  worker.once('left', () => {
    clients?.destroy();
    void health?.close();
  });
  const wantMetrics = metrics ?? fromEnv.metrics ?? false;
  if (wantMetrics !== false) {
    // Loaded only when asked: Powertools is not needed by a worker that does not publish.
    const { attachMetrics } = await import('./metrics.js');
    attachMetrics(worker, wantMetrics === true ? {} : wantMetrics);
  }

  const leaveOn = signals ?? runWorkerDefaults.signals;
  const listening: Array<[NodeJS.Signals, (signal: NodeJS.Signals) => void]> = [];
  if (leaveOn !== false) {
    const exit = exitAfterLeave ?? runWorkerDefaults.exitAfterLeave;
    let leaving = false;
    const leave = (signal: NodeJS.Signals) => {
      if (leaving) {
        logger.warn('second signal; exiting without finishing the leave', { signal });
        if (exit) process.exit(1);
        return;
      }
      leaving = true;
      logger.info('leaving on signal', { signal, node: worker.id });
      void worker
        .stop()
        .catch((error: unknown) => logger.error('graceful leave failed', { error: String(error) }))
        .finally(() => {
          for (const [s, l] of listening) process.removeListener(s, l);
          if (exit) process.exit(0);
        });
    };
    for (const s of leaveOn) {
      process.on(s, leave);
      listening.push([s, leave]);
    }
  }

  try {
    // A table made for another version of keeper (other keys, indexes or projections) would
    // make the worker misbehave quietly: refuse it, saying what differs and what to do.
    if (clients && table) {
      try {
        await checkTable(clients.client, table);
      } catch (error) {
        const name = (error as { name?: string }).name;
        if (error instanceof TableSchemaMismatchError || name === 'ResourceNotFoundException') throw error;
        // Throttling, an outage, a role without DescribeTable: the check is a safeguard, not a
        // precondition of the protocol, and a worker that cannot start is worse than one unchecked.
        logger.warn('could not check the table against the schema; starting anyway', { table, error: errorText(error) });
      }
    }
    await worker.start();
  } catch (error) {
    for (const [s, l] of listening) process.removeListener(s, l);
    clients?.destroy();
    await health?.close();
    throw error;
  }
  logger.info('worker running', { node: worker.id, periodMs: config.periodMs, staleTicks: config.staleTicks, fenceMs: config.fenceMs, driftBound: config.driftBound });
  return worker;
}

/** Options the caller left undefined must not hide the environment's values. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { TaskAdmin, taskPrioritySchema, taskWeightSchema } from '../admin.js';
import { skewedClock, systemClock } from '../clock.js';
import { ConfigError, resolveConfig, takeoverModes, type KeeperOptions } from '../config.js';
import { AuditLog, demoHandler, demoJobHandler } from '../demo.js';
import { formatLabels, parseLabels } from '../labels.js';
import { JavaMissingError, startLocalDb } from '../local-db.js';
import { errorText } from '../log.js';
import { createDynamoClient, documentClient, isValidEndpoint, resolveEndpoint } from '../store/client.js';
import { DynamoStore } from '../store/dynamo-store.js';
import { checkTable, ensureTable, TableSchemaMismatchError } from '../store/table.js';
import { runWorker } from '../run-worker.js';
import { defaultNodeId, NodeIdInUseError } from '../worker.js';
import { EnvironmentError, readWorkerEnvironment } from '../worker-environment.js';
import { HandlerModuleError, loadHandlerModule } from './handler-module.js';
import { HealthUsageError, healthCommand, UnhealthyError } from './health-command.js';
import { runLocalCluster } from './local-cluster.js';
import { formatStatus } from './status.js';

/**
 * The `keeper` command line. Bad use (unknown flags, bad numbers, invalid settings, a
 * malformed payload) prints one line and exits 2; failures at run time print one line and
 * exit 1; nothing prints a stack trace for a user's mistake.
 */
class UsageError extends Error {
  override name = 'UsageError';
}

const intArg = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
  return n;
};
const numArg = (name: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};

/** A priority as TaskAdmin checks it (a whole number in range), so the flag says what the API would. */
const priorityArg = (value: string) => {
  const parsed = taskPrioritySchema.safeParse(/^\s*[-+]?\d+\s*$/.test(value) ? Number(value) : Number.NaN);
  if (!parsed.success) throw new InvalidArgumentError(`--priority: ${parsed.error.issues[0]!.message}, got "${value}"`);
  return parsed.data;
};

/** A weight as TaskAdmin checks it (a whole number from 1), so the flag says what the API would. */
const weightArg = (value: string) => {
  const parsed = taskWeightSchema.safeParse(/^\s*\+?\d+\s*$/.test(value) ? Number(value) : Number.NaN);
  if (!parsed.success) throw new InvalidArgumentError(`--weight: ${parsed.error.issues[0]!.message}, got "${value}"`);
  return parsed.data;
};

/** Collects a repeatable option's values. */
const collect = (value: string, previous: string[]) => [...previous, value];

interface TableOptions {
  table?: string;
  endpoint?: string;
  region?: string;
}

function tableOf(options: TableOptions): string {
  const table = options.table ?? process.env['KEEPER_TABLE'];
  if (!table) throw new UsageError('missing --table (or set KEEPER_TABLE)');
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) throw new UsageError(`invalid table name "${table}": use 3-255 letters, digits, "_", "-" or "."`);
  return table;
}

function endpointOf(options: TableOptions): string | undefined {
  const endpoint = resolveEndpoint(options.endpoint);
  if (endpoint !== undefined && !isValidEndpoint(endpoint)) throw new UsageError(`invalid endpoint "${endpoint}": expected a URL such as http://127.0.0.1:8000`);
  return endpoint;
}

function storeFor(options: TableOptions, requestTimeoutMs = 3000, warn?: (m: string) => void) {
  const table = tableOf(options);
  const endpoint = endpointOf(options);
  const client = createDynamoClient({ ...(endpoint ? { endpoint } : {}), ...(options.region ? { region: options.region } : {}), requestTimeoutMs });
  const store = new DynamoStore({ client: documentClient(client), table, requestTimeoutMs, ...(warn ? { warn } : {}) });
  return { table, client, store };
}

const withTable = (command: Command) =>
  command
    .option('--table <name>', 'DynamoDB table (default: $KEEPER_TABLE)')
    .option('--endpoint <url>', 'DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB, else AWS)')
    .option('--region <region>', 'AWS region (default: $AWS_REGION)');

function parsePayload(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UsageError(`--payload is not valid JSON: ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`);
  }
}

/**
 * The installed package's version, from its package.json: two levels up both from
 * dist/cli/program.js (installed) and lib/cli/program.ts (run from source).
 */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return String(manifest.version);
}

export function buildProgram(): Command {
  const program = new Command('keeper')
    .description('Fail-safe singleton tasks for long-running workers, coordinated through one DynamoDB table.')
    .version(packageVersion(), '-V, --version', 'print the version of keeper')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('local-db')
    .description('run DynamoDB Local in the foreground (one shared database for every client)')
    .option('--port <n>', 'port', intArg('--port', 1), 8000)
    .option('--dir <path>', 'keep data on disk in this directory (default: in memory)')
    .action(async (o: { port: number; dir?: string }) => {
      const db = await startLocalDb({ port: o.port, ...(o.dir ? { dir: o.dir } : {}) });
      process.stdout.write(`DynamoDB Local is running at ${db.endpoint}${o.dir ? ` (data in ${o.dir})` : ' (in memory)'}\n`);
      process.stdout.write(`export AWS_ENDPOINT_URL_DYNAMODB=${db.endpoint}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        db.process.once('exit', stop);
      });
      await db.stop();
    });

  withTable(program.command('init').description('create the table and its indexes (idempotent)')).action(async (o: TableOptions) => {
    const { table, client } = storeFor(o);
    try {
      const created = await ensureTable(client, table);
      // An existing table may have been made by another version of keeper: check it.
      if (!created) await checkTable(client, table);
      process.stdout.write(created ? `created table ${table}\n` : `table ${table} already exists and matches the schema\n`);
    } finally {
      client.destroy();
    }
  });

  withTable(program.command('worker').description('run a worker: your handlers (--handlers) or the built-in demo handler'))
    .option('--handlers <module>', 'ES module whose default export (or export "handlers", or <module>#<export>) maps task types to handlers (default: $KEEPER_HANDLERS; none: the demo handler)')
    .option('--node-id <id>', 'node id (default: <host>-<pid>-<random>)')
    .option('--label <key=value>', 'a label this node publishes, which tasks may require or prefer (repeatable; adds to $KEEPER_LABELS, and wins over it per key)', collect, [])
    .option('--app-version <version>', 'application version this worker runs; placement prefers the newest present, so a deploy moves each task once (default: $KEEPER_APP_VERSION, else none)')
    .option('--period-ms <n>', 'heartbeat period', numArg('--period-ms'))
    .option('--stale-ticks <n>', 'benchmark ticks after which a peer is stale', numArg('--stale-ticks'))
    .option('--drift-bound <f>', 'clocks may run up to f times fast or slow', numArg('--drift-bound'))
    .option('--fence-ms <n>', 'self-fencing window (default: derived from the other settings)', numArg('--fence-ms'))
    .option('--request-timeout-ms <n>', 'per-request timeout', numArg('--request-timeout-ms'))
    .option('--capacity <n>', 'most task weight this node runs at once (a task weighs 1 unless added with --weight)', numArg('--capacity'))
    .option('--watch-peers <n>', 'peers each node watches on the ring', numArg('--watch-peers'))
    .option('--inbox-poll-ms <n>', 'also poll for handed-over tasks this often between heartbeats', numArg('--inbox-poll-ms'))
    .option('--leave-timeout-ms <n>', 'on SIGTERM, how long to wait for handlers that ignore their signal (default 20000)', numArg('--leave-timeout-ms'))
    .option('--move-write-units-per-second <n>', 'DynamoDB write units this node\'s task moves may spend per second (default 0: no limit)', numArg('--move-write-units-per-second'))
    .option('--max-starts-per-second <n>', 'task runs this node starts per second at most, highest priority first (default: $KEEPER_MAX_STARTS_PER_SECOND, else 0: no limit)', numArg('--max-starts-per-second'))
    .option('--doorbell-port <n>', 'UDP port peers ring on handovers (default: $KEEPER_DOORBELL_PORT, else any free port)', numArg('--doorbell-port'))
    .option('--doorbell-host <host>', 'address peers ring this node at (default: $KEEPER_DOORBELL_HOST, else the ECS task\'s address, else the first non-internal IPv4)')
    .option('--no-doorbell', 'no doorbell: handed-over tasks start at the next heartbeat (also KEEPER_DOORBELL=off)')
    .option('--health-port <n>', 'serve this worker\'s health on 127.0.0.1 at this port, for `keeper health` (default: $KEEPER_HEALTH_PORT, else none)', intArg('--health-port', 0))
    .addOption(new Option('--takeover <mode>', 'who gets a dead node\'s tasks').choices([...takeoverModes]))
    .option('--audit-log <path>', 'append one JSON line per demo task event to this file')
    .option('--demo-stop-delay-ms <n>', 'demo handler: on a leave, return this long after the stop signal (a slow handler, to try SIGTERM with; it does no work meanwhile)', intArg('--demo-stop-delay-ms', 0))
    .option('--demo-stop-delay-every <n>', 'demo handler: only every n-th demo task this worker starts is slow (default 1: every one)', intArg('--demo-stop-delay-every', 1))
    .addOption(new Option('--clock-rate <r>', 'fault injection: run the protocol clock r times real speed').argParser(numArg('--clock-rate')).hideHelp())
    .addOption(new Option('--clock-offset-ms <n>', 'fault injection: offset the protocol clock').argParser(numArg('--clock-offset-ms')).hideHelp())
    .action(async (o: TableOptions & Record<string, unknown>) => {
      const settings: KeeperOptions = {};
      const map: Array<[string, keyof KeeperOptions]> = [
        ['periodMs', 'periodMs'],
        ['staleTicks', 'staleTicks'],
        ['driftBound', 'driftBound'],
        ['fenceMs', 'fenceMs'],
        ['requestTimeoutMs', 'requestTimeoutMs'],
        ['capacity', 'capacity'],
        ['watchPeers', 'watchPeers'],
        ['inboxPollMs', 'inboxPollMs'],
        ['leaveTimeoutMs', 'leaveTimeoutMs'],
        ['moveWriteUnitsPerSecond', 'moveWriteUnitsPerSecond'],
        ['maxStartsPerSecond', 'maxStartsPerSecond'],
        ['doorbellPort', 'doorbellPort'],
        ['doorbellHost', 'doorbellHost'],
        ['takeover', 'takeover'],
        ['nodeId', 'nodeId'],
        ['appVersion', 'appVersion'],
      ];
      // The CDK construct configures workers through the environment (runWorker reads it); flags win.
      for (const [flag, key] of map) if (o[flag] !== undefined) (settings as Record<string, unknown>)[key] = o[flag];
      // Commander sets doorbell to true unless --no-doorbell: only the flag itself overrides the environment.
      if (o['doorbell'] === false) settings.doorbell = false;
      const fromEnv = readWorkerEnvironment();
      const labels = { ...fromEnv.settings.labels, ...parseLabels(o['label'] as string[], '--label') };
      if (Object.keys(labels).length > 0) settings.labels = labels;
      resolveConfig({ ...fromEnv.settings, ...settings }); // refuses unsafe settings before anything starts
      // Loaded before anything starts or is written: a bad module is a usage error.
      const handlerModule = (o['handlers'] as string | undefined) ?? fromEnv.handlers;
      const handlers = handlerModule !== undefined ? await loadHandlerModule(handlerModule) : undefined;
      if (handlers && o['auditLog']) throw new UsageError('--audit-log records the demo handler only; drop it, or drop --handlers');
      if (handlers && (o['demoStopDelayMs'] !== undefined || o['demoStopDelayEvery'] !== undefined)) throw new UsageError('--demo-stop-delay-ms and --demo-stop-delay-every shape the demo handler only; drop them, or drop --handlers');
      const rate = (o['clockRate'] as number | undefined) ?? 1;
      if (!(rate > 0)) throw new UsageError('--clock-rate must be > 0');
      const clock = rate !== 1 || o['clockOffsetMs'] ? skewedClock(systemClock, rate, (o['clockOffsetMs'] as number | undefined) ?? 0) : systemClock;
      const table = tableOf(o);
      const endpoint = endpointOf(o);
      // The audit log names the node, so the id is settled before the worker exists.
      const nodeId = settings.nodeId ?? fromEnv.settings.nodeId ?? defaultNodeId();
      const audit = o['auditLog'] ? new AuditLog(String(o['auditLog']), nodeId) : undefined;
      const worker = await runWorker({
        ...settings,
        nodeId,
        clock,
        table,
        ...(endpoint ? { endpoint } : {}),
        ...(o.region ? { region: o.region } : {}),
        // The built-in handlers: `demo` (long-running) and `demo-job` (finite: works a while, one side effect, a result).
        handlers: handlers ?? {
          demo: demoHandler(audit, { stopDelayMs: o['demoStopDelayMs'] as number | undefined, stopDelayEvery: o['demoStopDelayEvery'] as number | undefined }),
          'demo-job': { handler: demoJobHandler(audit), mode: 'finite' },
        },
        ...(o['healthPort'] !== undefined ? { healthPort: o['healthPort'] as number } : {}),
      });
      worker.once('left', () => audit?.close());
      await new Promise<never>(() => {});
    });

  const task = program.command('task').description('add, update, show, release, remove and list tasks');
  withTable(task.command('add').argument('<id>', 'task id').description('add a task (idempotent on id)'))
    .option('--type <type>', 'task type (a handler registered under this name runs it)', 'demo')
    .option('--payload <json>', 'task payload as JSON')
    .option('--priority <n>', 'whole number; higher priorities are placed first when capacity is short (default 0)', priorityArg)
    .option('--weight <n>', "whole number >= 1: how much of a node's capacity the task takes (default 1)", weightArg)
    .option('--require <key=value>', 'run only on a node with this label (repeatable: every one)', collect, [])
    .option('--prefer <key=value>', 'rather run on a node with this label, when one has room (repeatable)', collect, [])
    .action(async (id: string, o: TableOptions & { type: string; payload?: string; priority?: number; weight?: number; require: string[]; prefer: string[] }) => {
      const payload = parsePayload(o.payload);
      const require = parseLabels(o.require, '--require');
      const prefer = parseLabels(o.prefer, '--prefer');
      const { store, client } = storeFor(o);
      const { created, task: added } = await new TaskAdmin(store).add({
        id,
        type: o.type,
        payload,
        ...(o.priority !== undefined ? { priority: o.priority } : {}),
        ...(o.weight !== undefined ? { weight: o.weight } : {}),
        ...(Object.keys(require).length > 0 ? { require } : {}),
        ...(Object.keys(prefer).length > 0 ? { prefer } : {}),
      });
      const priority = added.priority ? `, priority ${added.priority}` : '';
      const weight = added.weight !== undefined && added.weight !== 1 ? `, weight ${added.weight}` : '';
      const selectors = [...(added.require ? [`requires ${formatLabels(added.require)}`] : []), ...(added.prefer ? [`prefers ${formatLabels(added.prefer)}`] : [])];
      const labels = selectors.map((s) => `, ${s}`).join('');
      process.stdout.write(created ? `added task ${added.id} (${added.type}${priority}${weight}${labels})\n` : `task ${added.id} already exists\n`);
      client.destroy();
    });
  withTable(task.command('rm').argument('<id>', 'task id').description('remove a task (its owner stops it)')).action(async (id: string, o: TableOptions) => {
    const { store, client } = storeFor(o);
    const removed = await new TaskAdmin(store).remove(id);
    process.stdout.write(`removed task ${removed.id}${removed.owner ? ` (was running on ${removed.owner})` : ''}\n`);
    client.destroy();
  });
  withTable(task.command('release').argument('<id>', 'task id').description('force-release a task back to the pool (its owner stops it first)')).action(
    async (id: string, o: TableOptions) => {
      const { store, client } = storeFor(o);
      const { pending } = await new TaskAdmin(store).release(id);
      process.stdout.write(pending ? `asked the owner to release task ${id}\n` : `task ${id} is unowned now\n`);
      client.destroy();
    },
  );
  withTable(
    task
      .command('update')
      .argument('<id>', 'task id')
      .description('give a ready task a new payload: its owner restarts it with it (a new token); an unowned one waits in the pool with it'),
  )
    .requiredOption('--payload <json>', 'the new payload as JSON')
    .option('--if-token <n>', 'only if the task still has this token (as `task show` printed it); refused otherwise', intArg('--if-token', 0))
    .action(async (id: string, o: TableOptions & { payload: string; ifToken?: number }) => {
      const payload = parsePayload(o.payload);
      const { store, client } = storeFor(o);
      try {
        const { task: updated, updated: changed } = await new TaskAdmin(store).update(id, o.ifToken === undefined ? { payload } : { payload, ifToken: o.ifToken });
        const where = updated.owner ? `its owner ${updated.owner} restarts it with the new payload` : 'it waits in the pool with the new payload';
        process.stdout.write(changed ? `updated task ${updated.id}: token ${updated.token}; ${where}\n` : `task ${updated.id} already has that payload; nothing changed\n`);
      } finally {
        client.destroy();
      }
    });
  withTable(task.command('show').argument('<id>', 'task id').description('show one task as JSON: owner, token, state, payload, checkpoint, result or error')).action(
    async (id: string, o: TableOptions) => {
      const { store, client } = storeFor(o);
      const shown = await new TaskAdmin(store).get(id);
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      client.destroy();
    },
  );
  withTable(task.command('ls').description('list tasks'))
    .option('--json', 'JSON output')
    .action(async (o: TableOptions & { json?: boolean }) => {
      const { store, client } = storeFor(o);
      const { tasks } = await new TaskAdmin(store).status();
      process.stdout.write(o.json ? `${JSON.stringify(tasks, null, 2)}\n` : formatStatus({ nodes: [], tasks }, { nodes: false }));
      client.destroy();
    });

  withTable(program.command('drain').argument('<node>', 'node id').description('drain a node: it takes no new tasks and hands its own to other nodes, each moving once')).action(
    async (id: string, o: TableOptions) => {
      const { store, client } = storeFor(o);
      const node = await new TaskAdmin(store).drain(id);
      const tasks = `${node.taskCount} task${node.taskCount === 1 ? '' : 's'}`;
      process.stdout.write(`node ${node.id} is draining: it takes no new tasks and hands its ${tasks} to other nodes (\`keeper status\` shows them go; \`keeper undrain ${node.id}\` ends it)\n`);
      client.destroy();
    },
  );
  withTable(program.command('undrain').argument('<node>', 'node id').description('end a drain: the node takes tasks again')).action(async (id: string, o: TableOptions) => {
    const { store, client } = storeFor(o);
    const node = await new TaskAdmin(store).undrain(id);
    process.stdout.write(`node ${node.id} takes tasks again\n`);
    client.destroy();
  });

  withTable(program.command('status').description('show nodes and tasks'))
    .option('--json', 'JSON output')
    .action(async (o: TableOptions & { json?: boolean }) => {
      const { store, client } = storeFor(o);
      const status = await new TaskAdmin(store).status();
      process.stdout.write(o.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
      client.destroy();
    });

  program.addCommand(healthCommand());

  program
    .command('local-cluster')
    .description('start DynamoDB Local and a local cluster of demo workers, show who runs what, kill one and show the takeover')
    .option('--workers <n>', 'number of workers', intArg('--workers', 1), 5)
    .option('--tasks <n>', 'number of demo tasks', intArg('--tasks', 0), 50)
    .option('--period-ms <n>', 'heartbeat period', numArg('--period-ms'), 1000)
    .option('--kill-after <s>', 'seconds until one worker is killed (0: never)', numArg('--kill-after'), 12)
    .option('--duration <s>', 'stop after this many seconds (default: until Ctrl-C)', numArg('--duration'))
    .action(async (o: { workers: number; tasks: number; periodMs: number; killAfter: number; duration?: number }) => {
      resolveConfig({ periodMs: o.periodMs });
      await runLocalCluster(o);
    });

  return program;
}

/** Maps an error to the one line a user sees and the exit code. */
export function describeFailure(error: unknown): { message: string; code: number } {
  // `keeper health` printed its line already.
  if (error instanceof UnhealthyError) return { message: '', code: 1 };
  if (error instanceof CommanderError) return { message: '', code: error.exitCode === 0 ? 0 : 2 };
  if (error instanceof UsageError || error instanceof ConfigError || error instanceof EnvironmentError || error instanceof HandlerModuleError || error instanceof HealthUsageError) {
    return { message: error.message, code: 2 };
  }
  const status = (error as { status?: number }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) return { message: (error as Error).message, code: 2 };
  if (error instanceof NodeIdInUseError || error instanceof JavaMissingError || error instanceof TableSchemaMismatchError) return { message: error.message, code: 1 };
  const name = (error as { name?: string }).name;
  if (name === 'TableMissingError') return { message: (error as Error).message, code: 1 };
  if (name === 'ResourceNotFoundException') return { message: 'table not found; create it with `keeper init --table <name>`', code: 1 };
  if (name === 'CredentialsProviderError') return { message: 'no AWS credentials found; configure them, or point --endpoint at DynamoDB Local', code: 1 };
  return { message: errorText(error), code: 1 };
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    const { message, code } = describeFailure(error);
    if (message) process.stderr.write(`keeper: ${message}\n`);
    return code;
  }
}


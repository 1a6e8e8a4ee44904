/**
 * `keeper/testing`: what a user needs to test their own handlers fast. An in-process cluster
 * of real workers ({@link startTestCluster}) over the in-memory store (no Java, no network)
 * or over a table in DynamoDB Local ({@link startLocalDb} and {@link localTable}).
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import { DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { TaskAdmin } from './admin.js';
import type { KeeperOptions } from './config.js';
import { silentLogger, type Logger } from './log.js';
import { createDynamoClient, documentClient } from './store/client.js';
import { DynamoStore } from './store/dynamo-store.js';
import { MemoryStore } from './store/memory-store.js';
import type { Store, TaskItem } from './store/store.js';
import { ensureTable } from './store/table.js';
import { registerHandlers, type TaskHandlers } from './task-handlers.js';
import { Worker } from './worker.js';

export { MemoryStore } from './store/memory-store.js';
export { startLocalDb, type LocalDb, type LocalDbOptions } from './local-db.js';

/** Options of {@link startTestCluster}; every protocol setting of a worker may be given too. */
export interface TestClusterOptions extends Omit<KeeperOptions, 'nodeId' | 'doorbell'> {
  /** The handlers every node runs, as `runWorker` and `keeper worker --handlers` take them. */
  handlers: TaskHandlers;
  /** How many workers; default 2. */
  nodes?: number;
  /** The store; default a fresh in-memory store. Pass `localTable(...).store` to test against DynamoDB Local. */
  store?: Store;
  /** Default: silent. */
  logger?: Logger;
}

/** The defaults of {@link startTestCluster}: a short period, so that claims and takeovers take a fraction of a second. */
export const testClusterDefaults = { nodes: 2, periodMs: 200 } as const;

/** A running in-process cluster, from {@link startTestCluster}. */
export interface TestCluster {
  /** The store every node shares. */
  readonly store: Store;
  /** The running workers, node ids `test-1`, `test-2`, ... */
  readonly workers: readonly Worker[];
  /** Adds, reads, releases and removes tasks, as `keeper task` does. */
  readonly admin: TaskAdmin;
  /** Adds a task (idempotent on id; priority default 0, weight default 1, no labels required or preferred) and returns it as stored. */
  addTask(task: { id: string; type: string; payload?: unknown; priority?: number; weight?: number; require?: Record<string, string>; prefer?: Record<string, string> }): Promise<TaskItem>;
  /**
   * Waits until the task satisfies `until` (default: done or failed) and returns it; throws
   * after `timeoutMs` (default 10 s) with the task's last state.
   */
  waitForTask(id: string, until?: (task: TaskItem) => boolean, timeoutMs?: number): Promise<TaskItem>;
  /** Every node leaves gracefully. */
  stop(): Promise<void>;
}

/**
 * Starts `nodes` real workers in this process, each running `handlers`, over one store, and
 * waits until all have joined. Doorbells are off (handovers are seen at the next heartbeat).
 * Call `stop()` when done, e.g. in `afterEach`.
 */
export async function startTestCluster(options: TestClusterOptions): Promise<TestCluster> {
  const { handlers, nodes = testClusterDefaults.nodes, store = new MemoryStore(), logger = silentLogger, ...settings } = options;
  const workers: Worker[] = [];
  for (let i = 1; i <= nodes; i++) {
    const worker = new Worker({ periodMs: testClusterDefaults.periodMs, ...settings, store, logger, nodeId: `test-${i}`, doorbell: false });
    registerHandlers(worker, handlers);
    workers.push(worker);
  }
  const started: Worker[] = [];
  try {
    for (const worker of workers) {
      await worker.start();
      started.push(worker);
    }
  } catch (error) {
    await Promise.allSettled(started.map((w) => w.stop()));
    throw error;
  }
  const admin = new TaskAdmin(store);
  return {
    store,
    workers,
    admin,
    addTask: async (task) => (await admin.add({ payload: null, ...task })).task,
    waitForTask: async (id, until = (t) => t.state !== 'ready', timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const task = await admin.get(id);
        if (until(task)) return task;
        if (Date.now() > deadline) throw new Error(`task ${id} did not reach the expected state within ${timeoutMs} ms; last seen: ${JSON.stringify(task)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop: async () => {
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}

/** A table of its own in DynamoDB Local, from {@link localTable}. */
export interface LocalTable {
  /** The table's name. */
  readonly table: string;
  /** The low-level client (for your own calls); destroyed by `drop()`. */
  readonly client: DynamoDBClient;
  /** A store over the table, for workers and `startTestCluster`. */
  readonly store: DynamoStore;
  /** Deletes the table and closes the client. */
  drop(): Promise<void>;
}

/**
 * Creates a fresh table (keeper's schema, a random name unless given) in the DynamoDB Local
 * at `endpoint`, e.g. the one `startLocalDb()` returned.
 */
export async function localTable(options: { endpoint: string; table?: string }): Promise<LocalTable> {
  const table = options.table ?? `keeper-test-${randomUUID().slice(0, 8)}`;
  const requestTimeoutMs = 5000;
  const client = createDynamoClient({ endpoint: options.endpoint, requestTimeoutMs });
  await ensureTable(client, table);
  return {
    table,
    client,
    store: new DynamoStore({ client: documentClient(client), table, requestTimeoutMs }),
    drop: async () => {
      await client.send(new DeleteTableCommand({ TableName: table }));
      client.destroy();
    },
  };
}

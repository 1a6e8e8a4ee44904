import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { ensureTable } from '../lib/store/table.js';

/**
 * Tables of one bench run, all in the run's own DynamoDB Local. Every trial gets fresh tables
 * (and drops them after), so no trial inherits items, indexes or load from the one before.
 * Setup goes through an unmetered admin client: it is not part of either system's cost.
 */
export const taskType = 'demo';

/** Tasks per second added to a running keeper cluster (see BenchTables.feedTasks). */
export const feedRate = 300;

export function taskIds(count: number): string[] {
  const width = String(count - 1).length;
  return Array.from({ length: count }, (_, i) => `task-${String(i).padStart(width, '0')}`);
}

async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export class BenchTables {
  private readonly admin: DynamoDBClient;
  private serial = 0;

  constructor(readonly endpoint: string) {
    this.admin = createDynamoClient({ endpoint, requestTimeoutMs: 30_000 });
  }

  name(prefix: string): string {
    this.serial += 1;
    return `${prefix}-${this.serial}-${Date.now().toString(36)}`;
  }

  /** A keeper table holding `tasks` unowned demo tasks, created through keeper's own API. */
  async keeperTable(prefix: string, tasks: readonly string[]): Promise<string> {
    const table = this.name(prefix);
    await ensureTable(this.admin, table);
    const store = new DynamoStore({ client: documentClient(this.admin), table, requestTimeoutMs: 30_000 });
    const createdAt = new Date().toISOString();
    await inParallel(tasks, 48, async (id) => {
      await store.createTask({ id, type: taskType, payload: { id } }, createdAt);
    });
    await store.bumpCluster('tasks');
    return table;
  }

  /**
   * Adds tasks to a running cluster at a steady rate, as an operator or an API would, through
   * keeper's own createTask (and a cluster bump every batch so nodes look for them). Created
   * all at once, n nodes claim them with 32 writes in flight each, which saturates DynamoDB
   * Local here and makes nodes time out their own heartbeats (docs/bench-findings.md).
   */
  async feedTasks(table: string, tasks: readonly string[], perSecond: number): Promise<void> {
    const store = new DynamoStore({ client: documentClient(this.admin), table, requestTimeoutMs: 30_000 });
    const createdAt = new Date().toISOString();
    const batch = Math.max(1, Math.round(perSecond / 4));
    const began = performance.now();
    for (let i = 0; i < tasks.length; i += batch) {
      await inParallel(tasks.slice(i, i + batch), 16, async (id) => {
        await store.createTask({ id, type: taskType, payload: { id } }, createdAt);
      });
      await store.bumpCluster('tasks');
      const due = began + ((i + batch) / perSecond) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** The lock table as the lock client's README sets it up: one string hash key, on demand. */
  async lockTable(prefix: string): Promise<string> {
    const table = this.name(prefix);
    await this.admin.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      }),
    );
    for (;;) {
      const out = await this.admin.send(new DescribeTableCommand({ TableName: table }));
      if (out.Table?.TableStatus === 'ACTIVE') return table;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Drops a table so DynamoDB Local does not carry its items into later trials. */
  async drop(table: string): Promise<void> {
    await this.admin.send(new DeleteTableCommand({ TableName: table })).catch(() => {});
  }

  close(): void {
    this.admin.destroy();
  }
}

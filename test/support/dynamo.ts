import { randomUUID } from 'node:crypto';
import { DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { inject } from 'vitest';
import { createDynamoClient, documentClient } from '../../lib/store/client.js';
import { DynamoStore, type RetryPolicy } from '../../lib/store/dynamo-store.js';
import { ensureTable } from '../../lib/store/table.js';
import type { Warn } from '../../lib/store/items.js';

export interface TestTable {
  endpoint: string;
  table: string;
  client: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  store(options?: { warn?: Warn; requestTimeoutMs?: number; retry?: Partial<RetryPolicy> }): DynamoStore;
  putRaw(record: Record<string, unknown>): Promise<void>;
  drop(): Promise<void>;
}

/** A fresh table in the run's DynamoDB Local (started by global-setup.ts). */
export async function freshTable(prefix = 'test'): Promise<TestTable> {
  const endpoint = inject('dynamoEndpoint');
  const table = `${prefix}-${randomUUID().slice(0, 8)}`;
  const client = createDynamoClient({ endpoint, requestTimeoutMs: 5000 });
  const doc = documentClient(client);
  await ensureTable(client, table);
  return {
    endpoint,
    table,
    client,
    doc,
    store: (options = {}) =>
      new DynamoStore({ client: doc, table, warn: options.warn, retry: options.retry, requestTimeoutMs: options.requestTimeoutMs ?? 5000 }),
    putRaw: async (record) => {
      await doc.send(new PutCommand({ TableName: table, Item: record }));
    },
    drop: async () => {
      await client.send(new DeleteTableCommand({ TableName: table }));
      client.destroy();
    },
  };
}

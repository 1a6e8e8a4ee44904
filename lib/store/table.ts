import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceInUseException,
  type CreateTableCommandInput,
} from '@aws-sdk/client-dynamodb';
import { keys, taskHeadAttributes } from './items.js';

/**
 * The table definition, shared by `keeper init`, the tests and the CDK construct so that the
 * three can never disagree (see items.ts for why the keys are what they are).
 */
export const tableSchema = {
  partitionKey: 'pk',
  sortKey: 'sk',
  indexes: [
    // Sorted by ring position; keys and `state` only (the id is in pk): heartbeats change
    // neither, so they cost no index writes.
    { name: keys.membersIndex, partitionKey: 'member', sortKey: 'ring', projection: { type: 'INCLUDE', attributes: ['state'] } },
    // What placing and moving a task needs, not its payload (items.ts). Sorted by ring slot,
    // so a node reads the free tasks of its own arc.
    { name: keys.ownerIndex, partitionKey: 'owner', sortKey: 'slot', projection: { type: 'INCLUDE', attributes: taskHeadAttributes } },
  ],
} as const;

export function createTableInput(table: string): CreateTableCommandInput {
  const attributes = new Set<string>([tableSchema.partitionKey, tableSchema.sortKey]);
  for (const index of tableSchema.indexes) {
    attributes.add(index.partitionKey);
    attributes.add(index.sortKey);
  }
  return {
    TableName: table,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [...attributes].map((name) => ({ AttributeName: name, AttributeType: 'S' })),
    KeySchema: [
      { AttributeName: tableSchema.partitionKey, KeyType: 'HASH' },
      { AttributeName: tableSchema.sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: tableSchema.indexes.map((index) => ({
      IndexName: index.name,
      KeySchema: [
        { AttributeName: index.partitionKey, KeyType: 'HASH' },
        { AttributeName: index.sortKey, KeyType: 'RANGE' },
      ],
      Projection:
        index.projection.type === 'INCLUDE'
          ? { ProjectionType: 'INCLUDE', NonKeyAttributes: [...index.projection.attributes] }
          : { ProjectionType: 'ALL' },
    })),
  };
}

/** Creates the table unless it exists, then waits until it is active. Returns whether it was created. */
export async function ensureTable(client: DynamoDBClient, table: string, timeoutMs = 60_000): Promise<boolean> {
  let created = true;
  try {
    await client.send(new CreateTableCommand(createTableInput(table)));
  } catch (error) {
    if (!(error instanceof ResourceInUseException) && (error as { name?: string }).name !== 'ResourceInUseException') throw error;
    created = false;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await client.send(new DescribeTableCommand({ TableName: table }));
    const indexesReady = (out.Table?.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === 'ACTIVE');
    if (out.Table?.TableStatus === 'ACTIVE' && indexesReady) return created;
    if (Date.now() > deadline) throw new Error(`table "${table}" did not become active within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

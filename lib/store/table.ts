import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceInUseException,
  type CreateTableCommandInput,
  type TableDescription,
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

/** The CreateTable request for a table with keeper's schema (tableSchema), on-demand. */
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

/**
 * An existing table whose keys or indexes differ from {@link tableSchema}. Workers on such a
 * table would misbehave quietly (a query on an index that lacks an attribute, or sorts by
 * another key, returns wrong answers, not errors), so `keeper init` and `runWorker` refuse
 * it. `differences` holds one sentence per difference, each saying what to do.
 */
export class TableSchemaMismatchError extends Error {
  override name = 'TableSchemaMismatchError';
  constructor(
    readonly table: string,
    readonly differences: string[],
  ) {
    super(`table "${table}" does not match the schema this version of keeper expects: ${differences.map((d, i) => `(${i + 1}) ${d}`).join('; ')}`);
  }
}

/**
 * Compares a described table with {@link tableSchema}: the key schema, each index's keys and
 * projection, and the key attributes' types. Extra indexes are the user's own business and
 * are not reported. Returns the differences, each with what to do; none when it matches.
 */
export function tableDifferences(description: TableDescription): string[] {
  const table = description.TableName ?? 'the table';
  const differences: string[] = [];
  const recreate = `create a new table with \`keeper init --table <new name>\` and point the workers at it (the keys of a table cannot change in place)`;
  const keysOf = (schema: Array<{ AttributeName?: string; KeyType?: string }> | undefined) =>
    `${schema?.find((k) => k.KeyType === 'HASH')?.AttributeName ?? '-'}/${schema?.find((k) => k.KeyType === 'RANGE')?.AttributeName ?? '-'}`;
  const types = new Map((description.AttributeDefinitions ?? []).map((a) => [a.AttributeName, a.AttributeType]));

  const tableKeys = keysOf(description.KeySchema);
  const wantedKeys = `${tableSchema.partitionKey}/${tableSchema.sortKey}`;
  if (tableKeys !== wantedKeys) differences.push(`its keys are ${tableKeys}, keeper needs ${wantedKeys}: ${recreate}`);

  const indexes = new Map((description.GlobalSecondaryIndexes ?? []).map((i) => [i.IndexName, i]));
  const fixIndex = (name: string) =>
    `delete index ${name} and create it again as \`keeper init\` would (\`aws dynamodb update-table --table-name ${table}\`, one index change at a time), or create a new table with \`keeper init\``;
  for (const wanted of tableSchema.indexes) {
    const found = indexes.get(wanted.name);
    if (!found) {
      differences.push(`index ${wanted.name} is missing: create it (keys ${wanted.partitionKey}/${wanted.sortKey}) with \`aws dynamodb update-table\`, or create a new table with \`keeper init\``);
      continue;
    }
    const foundKeys = keysOf(found.KeySchema);
    const wantedIndexKeys = `${wanted.partitionKey}/${wanted.sortKey}`;
    if (foundKeys !== wantedIndexKeys) {
      differences.push(`index ${wanted.name} has keys ${foundKeys}, keeper needs ${wantedIndexKeys}: ${fixIndex(wanted.name)}`);
      continue;
    }
    const projection = found.Projection?.ProjectionType ?? 'ALL';
    const foundAttributes = [...(found.Projection?.NonKeyAttributes ?? [])].sort();
    const wantedAttributes = wanted.projection.type === 'INCLUDE' ? [...wanted.projection.attributes].sort() : [];
    if (projection !== wanted.projection.type || foundAttributes.join(',') !== wantedAttributes.join(',')) {
      const describe = (type: string, attributes: string[]) => (type === 'INCLUDE' ? `INCLUDE ${attributes.join(', ')}` : type);
      differences.push(
        `index ${wanted.name} projects ${describe(projection, foundAttributes)}, keeper needs ${describe(wanted.projection.type, wantedAttributes)}: ${fixIndex(wanted.name)}`,
      );
    }
  }

  const keyAttributes = new Set<string>([tableSchema.partitionKey, tableSchema.sortKey, ...tableSchema.indexes.flatMap((i) => [i.partitionKey, i.sortKey])]);
  for (const attribute of keyAttributes) {
    const type = types.get(attribute);
    if (type !== undefined && type !== 'S') differences.push(`key attribute ${attribute} has type ${type}, keeper needs S (string): ${recreate}`);
  }
  return differences;
}

/**
 * Describes the table and refuses it with a {@link TableSchemaMismatchError} when it differs
 * from {@link tableSchema}. A missing table is left to the caller (the SDK's ResourceNotFoundException).
 */
export async function checkTable(client: DynamoDBClient, table: string): Promise<void> {
  const out = await client.send(new DescribeTableCommand({ TableName: table }));
  const differences = tableDifferences(out.Table ?? { TableName: table });
  if (differences.length > 0) throw new TableSchemaMismatchError(table, differences);
}

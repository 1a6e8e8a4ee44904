import { DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';

/**
 * The final table as the checker sees it: every item, read with plain AWS SDK calls rather
 * than through lib/, so that a bug in the store layer cannot hide itself.
 */
export interface TableSnapshot {
  tasks: Array<Record<string, unknown>>;
  nodes: Array<Record<string, unknown>>;
  other: number;
}

/** Reads every item of the table with plain Scan calls (strongly consistent). */
export async function scanTable(endpoint: string, table: string): Promise<TableSnapshot> {
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 5 });
  const out: TableSnapshot = { tasks: [], nodes: [], other: 0 };
  try {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await client.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }));
      for (const raw of page.Items ?? []) {
        const item = unmarshall(raw);
        if (item['sk'] === 'task') out.tasks.push(item);
        else if (item['sk'] === 'node') out.nodes.push(item);
        else out.other += 1;
      }
      start = page.LastEvaluatedKey;
    } while (start);
  } finally {
    client.destroy();
  }
  return out;
}

import { ConditionalCheckFailedException, CreateTableCommand, DynamoDBClient, GetItemCommand, PutItemCommand, ResourceInUseException } from '@aws-sdk/client-dynamodb';

/**
 * Where the ingester records how far it has read each feed. Every write carries the task's
 * fencing token and is refused when a higher token has written already: a former owner that
 * wakes up late (a long GC pause, a frozen VM) cannot overwrite the new owner's progress.
 */
export interface Checkpoints {
  /** Records `position` for `feed`; false when a newer owner (higher token) has written. */
  write(feed: string, position: number, token: number): Promise<boolean>;
  read(feed: string): Promise<{ position: number; token: number } | undefined>;
}

/** Checkpoints in a DynamoDB table of our own (key `feed`), with a conditional write per checkpoint. */
export class DynamoCheckpoints implements Checkpoints {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
  ) {}

  async write(feed: string, position: number, token: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { feed: { S: feed }, position: { N: String(position) }, token: { N: String(token) } },
          ConditionExpression: 'attribute_not_exists(#token) OR #token <= :token',
          ExpressionAttributeNames: { '#token': 'token' },
          ExpressionAttributeValues: { ':token': { N: String(token) } },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async read(feed: string): Promise<{ position: number; token: number } | undefined> {
    const { Item } = await this.client.send(new GetItemCommand({ TableName: this.table, Key: { feed: { S: feed } }, ConsistentRead: true }));
    return Item ? { position: Number(Item['position']?.N), token: Number(Item['token']?.N) } : undefined;
  }

  /** Creates the table (for local runs; in AWS the CDK app creates it). */
  static async createTable(client: DynamoDBClient, table: string): Promise<void> {
    try {
      await client.send(
        new CreateTableCommand({
          TableName: table,
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: [{ AttributeName: 'feed', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'feed', KeyType: 'HASH' }],
        }),
      );
    } catch (error) {
      if (!(error instanceof ResourceInUseException)) throw error;
    }
  }
}

/** Checkpoints in memory, for tests. */
export class MemoryCheckpoints implements Checkpoints {
  readonly items = new Map<string, { position: number; token: number }>();

  async write(feed: string, position: number, token: number): Promise<boolean> {
    const current = this.items.get(feed);
    if (current && current.token > token) return false;
    this.items.set(feed, { position, token });
    return true;
  }

  async read(feed: string) {
    return this.items.get(feed);
  }
}

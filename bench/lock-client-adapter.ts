import { DeleteCommand, GetCommand, PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * What dynamodb-lock-client expects of its `dynamodb` option: an aws-sdk v2 DocumentClient,
 * of which it calls only `get`, `put` and `delete`, callback style. This adapter maps them to
 * lib-dynamodb v3 commands so the baseline runs on the same SDK stack (and the same metering
 * middleware) as keeper.
 *
 * v2 errors carried the error name in `code`, and the library branches on
 * `error.code === 'ConditionalCheckFailedException'`; v3 errors only have `name`, so `code`
 * is copied over.
 *
 * `sever()` is how a crashed process looks from the table: nothing new is sent, and replies to
 * requests already on the wire are never delivered (so no callback runs, no heartbeat is
 * rescheduled, no acquire attempt continues).
 */
type Callback = (error: Error | null, data?: unknown) => void;

export interface V2StyleDocumentClient {
  get(params: object, callback: Callback): void;
  put(params: object, callback: Callback): void;
  delete(params: object, callback: Callback): void;
}

export interface PutKinds {
  heartbeats: number;
  heartbeatFailures: number;
  acquirePuts: number;
  releases: number;
}

export class LockClientAdapter implements V2StyleDocumentClient {
  private alive = true;
  /** Lock heartbeats and other puts, told apart by their condition (see `classify`). */
  readonly puts: PutKinds = { heartbeats: 0, heartbeatFailures: 0, acquirePuts: 0, releases: 0 };

  constructor(private readonly doc: DynamoDBDocumentClient) {}

  get(params: object, callback: Callback): void {
    this.call(() => this.doc.send(new GetCommand(params as never)), callback);
  }

  put(params: object, callback: Callback): void {
    const kind = classify(params as PutParams);
    if (kind === 'release') this.puts.releases += 1;
    else if (kind === 'acquire') this.puts.acquirePuts += 1;
    this.call(() => this.doc.send(new PutCommand(params as never)), (error, data) => {
      if (kind === 'heartbeat') {
        if (error) this.puts.heartbeatFailures += 1;
        else this.puts.heartbeats += 1;
      }
      callback(error, data);
    });
  }

  delete(params: object, callback: Callback): void {
    this.call(() => this.doc.send(new DeleteCommand(params as never)), callback);
  }

  sever(): void {
    this.alive = false;
  }

  private call(send: () => Promise<unknown>, callback: Callback): void {
    if (!this.alive) return;
    send().then(
      (data) => {
        if (this.alive) callback(null, data);
      },
      (error: Error & { code?: string }) => {
        if (!this.alive) return;
        error.code ??= error.name;
        callback(error);
      },
    );
  }
}

interface PutParams {
  ConditionExpression?: string;
  Item?: { leaseDurationMs?: number };
}

/**
 * The library's three kinds of put (index.js, v0.7.3): acquiring conditions on
 * `attribute_not_exists`; a heartbeat and a FailOpen release both on `attribute_exists ... and
 * guid = :guid`, the release writing leaseDurationMs 1.
 */
function classify(params: PutParams): 'acquire' | 'heartbeat' | 'release' {
  if (params.ConditionExpression?.startsWith('attribute_not_exists')) return 'acquire';
  return params.Item?.leaseDurationMs === 1 ? 'release' : 'heartbeat';
}

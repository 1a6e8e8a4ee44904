import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { CredentialCache, type CredentialSource } from './credentials.js';

/** Options of createDynamoClient. */
export interface ClientOptions {
  /** Endpoint URL; defaults to AWS_ENDPOINT_URL_DYNAMODB, then AWS's regional endpoint. */
  endpoint?: string;
  region?: string;
  /**
   * Deadline of one request. A partitioned worker must give up well within one period, so
   * the request, connection and socket timeouts are all set and a timeout throws (with
   * @smithy/node-http-handler 4.x a requestTimeout alone only logs a warning).
   */
  requestTimeoutMs: number;
  /** Credentials; default the SDK's chain (environment, profile, container or instance role). */
  credentials?: CredentialSource;
  /** Connections the client may open at once; more requests wait for one (default 50). */
  maxSockets?: number;
}

export function resolveEndpoint(endpoint?: string): string | undefined {
  return endpoint ?? process.env['AWS_ENDPOINT_URL_DYNAMODB'] ?? process.env['AWS_ENDPOINT_URL'] ?? undefined;
}

export function isLocalEndpoint(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  try {
    const host = new URL(endpoint).hostname;
    return host === 'localhost' || host === '127.0.0.1' || host === '::1' || host === '[::1]';
  } catch {
    return false;
  }
}

function hasConfiguredCredentials(): boolean {
  const env = process.env;
  return Boolean(env['AWS_ACCESS_KEY_ID'] || env['AWS_PROFILE'] || env['AWS_WEB_IDENTITY_TOKEN_FILE'] || env['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'] || env['AWS_CONTAINER_CREDENTIALS_FULL_URI']);
}

/** Whether an endpoint string is an absolute http(s) URL; the CLI checks it before use. */
export function isValidEndpoint(endpoint: string): boolean {
  try {
    const url = new URL(endpoint);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** A DynamoDB client with keeper's timeouts (each request gives up after requestTimeoutMs) and dummy credentials for a local endpoint. */
export function createDynamoClient(options: ClientOptions): DynamoDBClient {
  const endpoint = resolveEndpoint(options.endpoint);
  const local = isLocalEndpoint(endpoint);
  const timeout = Math.max(1, Math.round(options.requestTimeoutMs));
  return new DynamoDBClient({
    ...(endpoint ? { endpoint } : {}),
    region: options.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? (local ? 'us-east-1' : undefined),
    // DynamoDB Local accepts any credentials; a laptop without AWS config should still work.
    ...(local && !hasConfiguredCredentials() ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    // Retries are the store's business: a retried conditional write needs reconciling, which
    // the SDK's generic retry cannot do (see DynamoStore).
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: timeout,
      requestTimeout: timeout,
      socketTimeout: timeout,
      throwOnRequestTimeout: true,
      // Each handler has its own pool of connections: a client is a queue of its own.
      httpAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 50 },
      httpsAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 50 },
    }),
  });
}

/** The document client DynamoStore needs, over a client from createDynamoClient. */
export function documentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

/** The two clients of a node, from {@link createNodeClients}. */
export interface NodeClients {
  /** Everything but the heartbeat: reads, moves, outcomes. */
  client: DynamoDBClient;
  /** The heartbeat alone, on connections of its own. */
  heartbeatClient: DynamoDBClient;
  /** Closes both and stops renewing credentials. */
  destroy(): void;
}

/**
 * A node's clients: one for the heartbeat and one for the rest, on separate connection pools,
 * so that a burst of other requests (a takeover's moves, a page of tasks) can never queue a
 * beat behind it; and one credential cache for both, renewed ahead of expiry off the request
 * path (credentials.ts). A local endpoint gets dummy credentials, as createDynamoClient does.
 */
export function createNodeClients(options: Omit<ClientOptions, 'maxSockets'>): NodeClients {
  const local = isLocalEndpoint(resolveEndpoint(options.endpoint));
  const cache =
    options.credentials || !local || hasConfiguredCredentials()
      ? new CredentialCache(options.credentials ?? (defaultProvider() as CredentialSource), { waitMs: options.requestTimeoutMs })
      : undefined;
  const shared = { ...options, ...(cache ? { credentials: cache.provider } : {}) };
  const client = createDynamoClient(shared);
  // A beat is one request at a time; a second connection covers one left half-open.
  const heartbeatClient = createDynamoClient({ ...shared, maxSockets: 2 });
  return {
    client,
    heartbeatClient,
    destroy: () => {
      cache?.stop();
      client.destroy();
      heartbeatClient.destroy();
    },
  };
}

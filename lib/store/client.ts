import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';

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
    // Retries are the store's business: a retried conditional write needs reconciling, which
    // the SDK's generic retry cannot do (see DynamoStore).
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: timeout,
      requestTimeout: timeout,
      socketTimeout: timeout,
      throwOnRequestTimeout: true,
    }),
  });
}

/** The document client DynamoStore needs, over a client from createDynamoClient. */
export function documentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

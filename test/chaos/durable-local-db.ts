import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startLocalDb, type LocalDb } from '../../lib/local-db.js';

/**
 * DynamoDB Local with its data on disk, so that a store outage can be real: the java process
 * is stopped, and later started again on the same data directory and the same port. The
 * workers' proxies keep pointing at that port and see connection refusals in between, as a
 * client of an unreachable DynamoDB endpoint would.
 */
export class DurableLocalDb {
  private db: LocalDb | undefined;
  readonly dir: string;
  port = 0;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'keeper-chaos-db-'));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.db?.process.pid;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.db = await startLocalDb({ port: this.port, dir: this.dir });
  }

  /** Stops the java process and waits until it has exited. */
  async stop(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    await db?.stop();
  }

  /** Starts again on the same directory and port; retries while the port is still being released. */
  async restart(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        this.db = await startLocalDb({ port: this.port, dir: this.dir, startTimeoutMs: Math.max(5000, deadline - performance.now()) });
        return;
      } catch (error) {
        if (performance.now() > deadline) throw new Error(`DynamoDB Local did not come back on port ${this.port}: ${(error as Error).message.split('\n')[0]}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** Stops the database and removes its data directory. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

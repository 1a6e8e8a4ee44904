import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
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

  /**
   * Starts again on the same directory and port. Each attempt gets `attemptMs` to answer (a
   * restart on a loaded machine took up to 23 s here, and a java process that does not answer
   * at all is ended by startLocalDb and tried again); a port still being released is retried.
   */
  async restart(attempts = 3, attemptMs = 60_000): Promise<void> {
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        this.db = await startLocalDb({ port: this.port, dir: this.dir, startTimeoutMs: attemptMs });
        return;
      } catch (error) {
        last = error;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    const size = this.dataBytes();
    throw new Error(`DynamoDB Local did not come back on port ${this.port} after ${attempts} attempts of ${attemptMs / 1000} s (data ${(size / 2 ** 20).toFixed(1)} MB): ${(last as Error).message.split('\n')[0]}`);
  }

  /** Size of the data directory, for the report. */
  dataBytes(): number {
    try {
      return readdirSync(this.dir).reduce((n, f) => n + statSync(join(this.dir, f)).size, 0);
    } catch {
      return 0;
    }
  }

  /** Stops the database and removes its data directory. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { createDynamoClient } from '../../lib/store/client.js';
import type { FaultLog } from './fault-log.js';

/**
 * Measures the store the way the protocol depends on it: the failover bound assumes that a
 * request completes within the request timeout d. Twice a second the harness reads one item
 * straight from DynamoDB Local (not through a proxy) and times it; every stretch in which a
 * read took longer than d, or failed, is written to the fault log as 'store-slow'. On two
 * shared cores DynamoDB Local sometimes takes seconds to answer; the checker does not hold
 * the protocol's liveness to its bound during those stretches (safety is judged throughout).
 */
export class StoreProbe {
  private timer: NodeJS.Timeout | undefined;
  private slowSince: bigint | undefined;
  private lastSlowEnd: bigint = 0n;
  private inFlight = false;
  private readonly client;

  constructor(
    endpoint: string,
    private readonly table: string,
    private readonly limitMs: number,
    private readonly log: FaultLog,
  ) {
    this.client = createDynamoClient({ endpoint, requestTimeoutMs: 10_000 });
  }

  start(intervalMs = 500): void {
    this.timer = setInterval(() => void this.probe(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.close(process.hrtime.bigint());
    this.client.destroy();
  }

  private async probe(): Promise<void> {
    if (this.inFlight) return; // the previous probe is still waiting: that stretch is already slow
    this.inFlight = true;
    const sent = process.hrtime.bigint();
    let ok = true;
    try {
      await this.client.send(new GetItemCommand({ TableName: this.table, Key: { pk: { S: 'cluster' }, sk: { S: 'cluster' } } }));
    } catch {
      ok = false;
    }
    const done = process.hrtime.bigint();
    this.inFlight = false;
    const slow = !ok || Number(done - sent) / 1e6 > this.limitMs;
    if (slow) {
      this.slowSince ??= sent > this.lastSlowEnd ? sent : this.lastSlowEnd;
    } else if (this.slowSince !== undefined) {
      this.close(done);
    }
  }

  private close(at: bigint): void {
    if (this.slowSince === undefined) return;
    this.log.write({ type: 'store-slow', from_ns: this.slowSince.toString(), to_ns: at.toString() });
    this.lastSlowEnd = at;
    this.slowSince = undefined;
  }
}

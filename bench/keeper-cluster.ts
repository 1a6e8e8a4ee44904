import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { resolveConfig, type KeeperOptions } from '../lib/config.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { Worker } from '../lib/worker.js';
import type { CapacityMeter } from './capacity-meter.js';
import type { RunLedger } from './run-ledger.js';
import { taskType } from './tables.js';

/**
 * keeper nodes in this process, each with its own DynamoDB client (own connection pool,
 * timeouts and metering), as separate processes would have. Timeouts are what the CLI uses:
 * the config's requestTimeoutMs for the HTTP handler and the store.
 */
/** What each of keeper's requests is for, from the key design in lib/store/items.ts. */
export function keeperRequestLabel(operation: string, input: Record<string, unknown>): string {
  const key = (input['Key'] ?? input['Item']) as { pk?: unknown } | undefined;
  const pk = String(key?.pk ?? '');
  const item = pk.startsWith('node#') ? 'node' : pk.startsWith('task#') ? 'task' : pk === 'cluster' ? 'cluster' : 'other';
  const update = String(input['UpdateExpression'] ?? '');
  const purpose = (() => {
    switch (operation) {
      case 'UpdateItem':
        if (item === 'node') {
          if (update.startsWith('SET #counter')) return 'heartbeat';
          if (update.includes('ADD inbox')) return 'notify';
          if (update.includes(':dead')) return 'declare dead';
          if (update.includes(':left')) return 'leave';
        }
        if (item === 'task') return update.includes(':toOwner') ? 'move task' : 'record task outcome';
        if (item === 'cluster') return 'bump cluster';
        return 'update';
      case 'BatchGetItem': {
        // Node items (with the cluster item) for the detector; task items for tasks handed over.
        const requests = Object.values((input['RequestItems'] ?? {}) as Record<string, { Keys?: Array<{ pk?: unknown }> }>);
        const first = requests[0]?.Keys?.[0]?.pk;
        const firstPk = typeof first === 'string' ? first : String((first as { S?: unknown } | undefined)?.S ?? '');
        return firstPk.startsWith('task#') ? 'get tasks' : 'read watched peers';
      }
      case 'Query': {
        if (input['IndexName'] === 'members') return 'list members';
        const values = input['ExpressionAttributeValues'] as Record<string, unknown> | undefined;
        return values?.[':owner'] === '#free' ? 'find unowned tasks' : 'tasks by owner';
      }
      case 'GetItem':
        if (item === 'node') return input['ProjectionExpression'] ? 'inbox poll' : 'get node';
        return `get ${item}`;
      case 'PutItem':
        return item === 'node' ? 'join' : `put ${item}`;
      case 'DeleteItem':
        return `delete ${item}`;
      default:
        return 'other';
    }
  })();
  return `${purpose} (${operation})`;
}

export interface KeeperClusterOptions {
  endpoint: string;
  table: string;
  meter: CapacityMeter;
  ledger: RunLedger;
  settings: KeeperOptions;
}

export interface ProtocolEvents {
  heartbeatFailures: number;
  fenced: number;
  zombies: number;
  declarations: Array<{ by: string; node: string; at: number }>;
  takeovers: Array<{ by: string; node: string; tasks: number; moved: number; ms: number; at: number }>;
}

interface Node {
  worker: Worker;
  client: DynamoDBClient;
}

export class KeeperCluster {
  private readonly nodes = new Map<string, Node>();
  readonly events: ProtocolEvents = { heartbeatFailures: 0, fenced: 0, zombies: 0, declarations: [], takeovers: [] };

  constructor(private readonly options: KeeperClusterOptions) {}

  get config() {
    return resolveConfig(this.options.settings);
  }

  /** Creates and starts nodes (in parallel, as a fleet would come up). */
  async start(ids: readonly string[], extra: Partial<KeeperOptions> = {}): Promise<void> {
    await Promise.all(ids.map((id) => this.startOne(id, extra)));
  }

  private async startOne(id: string, extra: Partial<KeeperOptions>): Promise<void> {
    const { endpoint, table, meter, ledger } = this.options;
    // Every node of the bench is on this machine: rings stay on the loopback interface.
    const settings: KeeperOptions = { doorbellHost: '127.0.0.1', ...this.options.settings, ...extra, nodeId: id };
    const config = resolveConfig(settings);
    const client = createDynamoClient({ endpoint, requestTimeoutMs: config.requestTimeoutMs });
    meter.attach(client);
    const store = new DynamoStore({ client: documentClient(client), table, requestTimeoutMs: config.requestTimeoutMs });
    const worker = new Worker({ ...settings, store });
    worker.handle(taskType, (ctx) => {
      ledger.started(ctx.task.id, id);
      return new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          ledger.stopped(ctx.task.id, id);
          resolve();
        }, { once: true }),
      );
    });
    worker.on('heartbeat-failed', () => (this.events.heartbeatFailures += 1));
    worker.on('fenced', () => (this.events.fenced += 1));
    worker.on('zombie', () => (this.events.zombies += 1));
    worker.on('declared-dead', ({ node }) => this.events.declarations.push({ by: id, node, at: performance.now() }));
    worker.on('takeover', (e) => this.events.takeovers.push({ by: id, ...e, at: performance.now() }));
    this.nodes.set(id, { worker, client });
    await worker.start();
  }

  ids(): string[] {
    return [...this.nodes.keys()];
  }

  worker(id: string): Worker {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no keeper node ${id}`);
    return node.worker;
  }

  /** The live node that runs the most tasks. */
  busiest(): string {
    let best = '';
    let most = -1;
    for (const [id, { worker }] of this.nodes) {
      const n = worker.runningTasks().length;
      if (n > most) [best, most] = [id, n];
    }
    return best;
  }

  /** A crash as peers see it: the node stops without telling anyone. Returns the kill time. */
  async kill(id: string): Promise<number> {
    const node = this.nodes.get(id)!;
    const at = performance.now();
    await node.worker.kill();
    node.client.destroy();
    this.nodes.delete(id);
    return at;
  }

  /** A graceful leave (what SIGTERM does). Returns the time stop() was called. */
  async stop(id: string): Promise<number> {
    const node = this.nodes.get(id)!;
    const at = performance.now();
    await node.worker.stop();
    node.client.destroy();
    this.nodes.delete(id);
    return at;
  }

  async close(): Promise<void> {
    await Promise.all([...this.nodes.values()].map(async ({ worker, client }) => {
      await worker.kill().catch(() => {});
      client.destroy();
    }));
    this.nodes.clear();
  }
}

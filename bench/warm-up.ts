import type { BenchContext } from './context.js';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { taskIds } from './tables.js';

/**
 * DynamoDB Local is a JVM: its first thousands of requests run several times slower than the
 * rest while the JIT compiles. Creating and moving a few thousand tasks first keeps that out of
 * whichever scenario happens to run first.
 */
export async function warmUp(ctx: BenchContext): Promise<void> {
  const began = performance.now();
  const ids = taskIds(ctx.quick ? 1000 : 3000);
  const table = await ctx.tables.keeperTable('warm-up', ids);
  const client = createDynamoClient({ endpoint: ctx.endpoint, requestTimeoutMs: 30_000 });
  const store = new DynamoStore({ client: documentClient(client), table, requestTimeoutMs: 30_000 });
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      await store.moveTask(id, { owner: null, ownerInc: 0, token: 0 }, { owner: 'warm', ownerInc: 1 });
      await store.getTask(id);
    }
  }));
  await store.tasksOwnedBy('warm');
  client.destroy();
  await ctx.tables.drop(table);
  ctx.log(`warm-up: ${ids.length} creates, moves and reads in ${((performance.now() - began) / 1000).toFixed(1)} s`);
}

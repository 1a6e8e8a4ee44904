import { inject } from 'vitest';
import { describe, expect, it } from 'vitest';
import { localTable, startTestCluster } from '../lib/testing.js';

/** keeper/testing, as a user's own handler tests would use it. */
describe('keeper/testing', () => {
  it('runs handlers on an in-memory cluster, and moves a task when its node leaves', async () => {
    const seen: string[] = [];
    const cluster = await startTestCluster({
      handlers: {
        sum: { handler: (ctx) => (ctx.task.payload as number[]).reduce((a, b) => a + b, 0), mode: 'finite' },
        watch: async (ctx) => {
          seen.push(ctx.task.id);
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        },
      },
    });
    try {
      expect(cluster.workers).toHaveLength(2);
      await cluster.addTask({ id: 's', type: 'sum', payload: [1, 2, 3] });
      expect(await cluster.waitForTask('s')).toMatchObject({ state: 'done', result: 6 });
      await cluster.addTask({ id: 'w', type: 'watch' });
      const first = await cluster.waitForTask('w', (task) => task.owner !== null);
      const owner = cluster.workers.find((w) => w.id === first.owner)!;
      await owner.stop();
      const moved = await cluster.waitForTask('w', (task) => task.owner !== null && task.owner !== owner.id);
      expect(moved.token).toBeGreaterThan(first.token);
      await expect.poll(() => seen.filter((id) => id === 'w').length).toBe(2);
    } finally {
      await cluster.stop();
    }
  });

  it('says which task did not get there, and how it was last seen', async () => {
    const cluster = await startTestCluster({ nodes: 1, handlers: { other: () => {} } });
    try {
      await cluster.addTask({ id: 'nobody', type: 'unhandled' });
      await expect(cluster.waitForTask('nobody', undefined, 300)).rejects.toThrow(/task nobody did not reach the expected state within 300 ms; last seen: .*"state":"ready"/);
    } finally {
      await cluster.stop();
    }
  });

  it('runs the same cluster on a fresh table in DynamoDB Local', async () => {
    const table = await localTable({ endpoint: inject('dynamoEndpoint') });
    const cluster = await startTestCluster({ store: table.store, handlers: { sum: { handler: () => 1, mode: 'finite' } } });
    try {
      await cluster.addTask({ id: 'on-dynamo', type: 'sum' });
      expect(await cluster.waitForTask('on-dynamo')).toMatchObject({ state: 'done', result: 1 });
    } finally {
      await cluster.stop();
      await table.drop();
    }
  });
});

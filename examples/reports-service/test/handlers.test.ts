import { startTestCluster, type TestCluster } from 'keeper/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryCheckpoints } from '../src/checkpoints.js';
import { createHandlers } from '../src/handlers.js';

/** Our handlers on two real keeper workers, in this process, in memory: no AWS, no Java. */
let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('reports-service handlers', () => {
  it('summarise: completes with the summary', async () => {
    cluster = await startTestCluster({ handlers: createHandlers(new MemoryCheckpoints()) });
    await cluster.addTask({ id: 'day-1', type: 'summarise', payload: { figures: [2, 4, 9] } });
    expect(await cluster.waitForTask('day-1')).toMatchObject({ state: 'done', result: { count: 3, total: 15, mean: 5 } });
  });

  it('summarise: fails for good after three attempts on bad input', async () => {
    cluster = await startTestCluster({ handlers: createHandlers(new MemoryCheckpoints()) });
    await cluster.addTask({ id: 'bad', type: 'summarise', payload: { figures: [] } });
    expect(await cluster.waitForTask('bad', undefined, 30_000)).toMatchObject({ state: 'failed', attempts: 3 });
  }, 40_000);

  it('ingest: advances the checkpoint, and a new owner continues with a higher token', async () => {
    const checkpoints = new MemoryCheckpoints();
    cluster = await startTestCluster({ handlers: createHandlers(checkpoints) });
    await cluster.addTask({ id: 'feed-a', type: 'ingest', payload: { feed: 'a', everyMs: 20 } });
    await expect.poll(() => checkpoints.items.get('a')?.position ?? 0).toBeGreaterThan(3);
    const first = checkpoints.items.get('a')!;
    const task = await cluster.admin.get('feed-a');
    await cluster.workers.find((w) => w.id === task.owner)!.stop();
    await expect.poll(() => checkpoints.items.get('a')!.token, { timeout: 10_000 }).toBeGreaterThan(first.token);
    expect(checkpoints.items.get('a')!.position).toBeGreaterThan(first.position);
  });

  it('ingest: a write with an older token is refused', async () => {
    const checkpoints = new MemoryCheckpoints();
    expect(await checkpoints.write('b', 10, 5)).toBe(true);
    expect(await checkpoints.write('b', 11, 4)).toBe(false);
    expect(checkpoints.items.get('b')).toEqual({ position: 10, token: 5 });
  });
});

import { describe, expect, it } from 'vitest';
import { failoverBoundMs, resolveConfig } from '../lib/config.js';
import { measureScale } from './support/scale-model.js';

/** The simulator at cluster sizes one machine cannot run against DynamoDB Local (docs/scale.md). */
describe('per-node cost does not grow with the cluster (simulator)', () => {
  it('reads and writes per node per period are the same at 20 and 200 nodes, and a death costs O(k) membership reads', async () => {
    const small = await measureScale(20, 10, 15, 3);
    const large = await measureScale(200, 10, 15, 3);
    for (const figures of [small, large]) {
      expect(figures.callsPerNodePeriod['heartbeat']).toBe(1);
      expect(figures.callsPerNodePeriod['readNodes']).toBe(1);
      expect(figures.itemsReadPerNodePeriod).toBe(3);
    }
    // Three watchers re-read a few ring entries each; in a large cluster nobody reads the
    // whole membership (a node of a small one reads the whole ring, to split claims evenly).
    expect(large.memberEntriesPerDeath).toBeLessThanOrEqual(3 * 16 + 16);
    expect(small.memberEntriesPerDeath).toBeLessThanOrEqual(4 * 20 + 16);
    for (const figures of [small, large]) {
      expect(figures.takeoverMs).toBeLessThan(failoverBoundMs(resolveConfig()));
    }
    const total = (f: typeof small) => Object.values(f.callsPerNodePeriod).reduce((a, b) => a + b, 0);
    expect(Math.abs(total(large) - total(small)) / total(small)).toBeLessThan(0.1);
  }, 120_000);
});

import { describe, expect, it } from 'vitest';
import { runSchedule } from './support/simulation.js';

describe('deterministic simulation (in-memory store, virtual time)', () => {
  it('1,000 seeded schedules of crashes, pauses, partitions, leaves and skewed clocks: no task ever runs twice, takeovers stay within the bound, no task is lost', async () => {
    const failures: string[] = [];
    let takeovers = 0;
    for (let seed = 1; seed <= 1000; seed++) {
      const result = await runSchedule(seed);
      takeovers += result.takeoversMs.length;
      if (result.violations.length > 0) failures.push(`seed ${seed} (${result.nodes} nodes, ${result.tasks} tasks, ${result.faults.join(', ')}): ${result.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
    expect(takeovers).toBeGreaterThan(500);
  }, 600_000);

  it('replays a seed identically', async () => {
    const a = await runSchedule(4242);
    const b = await runSchedule(4242);
    expect(b).toEqual(a);
  });

  it('catches a fence window longer than the safety bound allows (the checker can fail)', async () => {
    const found: string[] = [];
    for (let seed = 1; seed <= 40 && found.length === 0; seed++) {
      const result = await runSchedule(seed, { drift: 'tight', kinds: ['pause'], unsafeFenceMs: 30_000 });
      found.push(...result.violations.filter((v) => v.includes('at once')));
    }
    expect(found.length).toBeGreaterThan(0);
  }, 120_000);
});

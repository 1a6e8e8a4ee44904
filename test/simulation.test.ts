import { describe, expect, it } from 'vitest';
import { runSchedule } from './support/simulation.js';

describe('deterministic simulation (in-memory store, virtual time)', () => {
  it('1,000 seeded schedules of crashes, pauses, partitions, leaves and skewed clocks, two in five in the cloud (index lag, partial batch reads, per-partition throttling): no task ever runs twice, takeovers stay within the bound, no task is lost, finite tasks complete once', async () => {
    const failures: string[] = [];
    let takeovers = 0;
    const cloud = { schedules: 0, laggedReads: 0, unprocessedKeys: 0, unreadKeys: 0, throttledWrites: 0 };
    const finite = { tasks: 0, effects: 0, repeated: 0 };
    for (let seed = 1; seed <= 1000; seed++) {
      const result = await runSchedule(seed);
      takeovers += result.takeoversMs.length;
      for (const key of ['tasks', 'effects', 'repeated'] as const) finite[key] += result.finite[key];
      if (result.cloud) {
        cloud.schedules += 1;
        for (const key of ['laggedReads', 'unprocessedKeys', 'unreadKeys', 'throttledWrites'] as const) cloud[key] += result.cloud[key];
      }
      if (result.violations.length > 0) failures.push(`seed ${seed} (${result.nodes} nodes, ${result.tasks} tasks, ${result.faults.join(', ')}${result.cloud ? ', in the cloud' : ''}): ${result.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
    expect(takeovers).toBeGreaterThan(500);
    // Finite tasks ran to completion, each side effect repeated only after a fault of the
    // node that did it first (the schedules' own check); most never repeated at all.
    expect(finite.tasks).toBeGreaterThan(3000);
    expect(finite.effects).toBeGreaterThanOrEqual(finite.tasks);
    expect(finite.repeated, JSON.stringify(finite)).toBeLessThan(finite.tasks / 20);
    // The cloud's behaviours happened, in every kind.
    expect(cloud.schedules).toBeGreaterThan(300);
    for (const key of ['laggedReads', 'unprocessedKeys', 'unreadKeys', 'throttledWrites'] as const) expect(cloud[key], key).toBeGreaterThan(0);
  }, 600_000);

  it('200 schedules whose nodes run different settings (periods of 500 to 1,500 ms, stale thresholds of 3 to 6, drift bounds of 1.05 and 1.2, handler stop times): no task runs twice, takeovers stay within the larger peer\'s bound', async () => {
    const failures: string[] = [];
    let takeovers = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const result = await runSchedule(seed, { mixed: true, drift: 'tight' });
      takeovers += result.takeoversMs.length;
      if (result.violations.length > 0) failures.push(`seed ${seed} (${result.nodes} nodes, ${result.faults.join(', ')}): ${result.violations.slice(0, 3).join('; ')}`);
    }
    expect(failures).toEqual([]);
    expect(takeovers).toBeGreaterThan(100);
  }, 300_000);

  it('catches nodes that judge every peer by their own settings in a mixed cluster (the checker can fail)', async () => {
    const found: string[] = [];
    for (let seed = 1; seed <= 200 && found.length === 0; seed++) {
      const result = await runSchedule(seed, { mixed: true, drift: 'tight', kinds: ['partition'], judgeByOwnSettings: true });
      found.push(...result.violations.filter((v) => v.includes('at once')));
    }
    expect(found.length).toBeGreaterThan(0);
  }, 120_000);

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

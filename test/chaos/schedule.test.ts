import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseChaosArgs, UsageError } from './options.js';
import { allKinds, planSchedule, ScheduleError, stubbornTermAhead, type PlannedFault } from './schedule.js';

/** The fault schedule and the command line of `npm run chaos`, without running anything. */
const timing = { boundMs: 7000, driftBound: 1.5, storeRestartMs: 6000, stallMaxMs: 2500 };
const root = join(import.meta.dirname, '..', '..');

function busyInterval(f: PlannedFault): [number, number] | undefined {
  if (f.kind === 'kill' || f.kind === 'term' || f.kind === 'stubborn-term') return [f.atMs, f.atMs + f.replaceAfterMs];
  if (f.kind === 'pause' || f.kind === 'stall' || f.kind === 'partition') return [f.atMs, f.atMs + f.durationMs];
  return undefined;
}

describe('chaos schedule', () => {
  it('one seed, one schedule; another seed, another', () => {
    const a = planSchedule({ seed: 54, workers: 5, seconds: 160, faultsPerKind: 3 }, timing);
    expect(planSchedule({ seed: 54, workers: 5, seconds: 160, faultsPerKind: 3 }, timing)).toEqual(a);
    expect(planSchedule({ seed: 55, workers: 5, seconds: 160, faultsPerKind: 3 }, timing).faults).not.toEqual(a.faults);
  });

  it('keeps its rules: N of each kind, a minority down at once, outages clear of every worker fault, pauses and outages beyond the bound, stalls within their limit', () => {
    for (const seed of [1, 2, 3, 54, 99]) {
      const plan = planSchedule({ seed, workers: 5, seconds: 400, faultsPerKind: 4 }, timing);
      for (const kind of ['kill', 'pause', 'stall', 'partition', 'term', 'net', 'outage']) expect(plan.faults.filter((f) => f.kind === kind)).toHaveLength(4);
      expect(plan.clocks.slice(0, 4).every((c) => c.rate !== 1 && Math.abs(c.offsetMs) >= 3_600_000)).toBe(true);
      expect(plan.clocks.every((c) => c.rate <= 1.5 + 1e-9 && c.rate >= 1 / 1.5 - 1e-9)).toBe(true);
      expect(plan.maxDown).toBe(2);
      for (const f of plan.faults) {
        if (f.kind === 'pause') expect(f.durationMs).toBeGreaterThan(timing.boundMs);
        if (f.kind === 'stall') expect(f.durationMs).toBeLessThanOrEqual(timing.stallMaxMs);
        if (f.kind === 'outage') expect(f.downMs).toBeGreaterThan(timing.boundMs);
        const busy = busyInterval(f);
        if (!busy) continue;
        const concurrent = plan.faults.filter((g) => {
          const other = busyInterval(g);
          return other !== undefined && other[0] <= busy[0] && busy[0] < other[1];
        });
        expect(concurrent.length, `seed ${seed}: faults out at ${busy[0]}`).toBeLessThanOrEqual(plan.maxDown);
        // Its takeover (one bound) is over before any outage begins, and it starts after any ends.
        for (const o of plan.faults.filter((g) => g.kind === 'outage')) {
          const outageEnd = o.atMs + o.downMs + timing.storeRestartMs;
          expect(busy[0] >= outageEnd || busy[0] + timing.boundMs <= o.atMs, `seed ${seed}: ${f.kind} at ${busy[0]} vs outage at ${o.atMs}`).toBe(true);
        }
      }
    }
  });

  it('the default mix plans exactly what it planned before the opt-in kinds existed (digests taken at 17cef4d)', () => {
    const digest = (input: Parameters<typeof planSchedule>[0]) => createHash('sha256').update(JSON.stringify(planSchedule(input, timing))).digest('hex').slice(0, 16);
    // The CI run's seed and shape, the one in the docs' example, and two searches for the most faults that fit.
    expect(digest({ seed: 55, workers: 5, seconds: 180, faultsPerKind: 3 })).toBe('f9d0847cfe9ac150');
    expect(digest({ seed: 54, workers: 5, seconds: 160, faultsPerKind: 3 })).toBe('58e32af7a864889f');
    expect(digest({ seed: 1203, workers: 8, seconds: 600 })).toBe('e85e2c8b93d98a66');
    expect(digest({ seed: 1, workers: 5, seconds: 300 })).toBe('e80dd31fa46ea587');
    expect(planSchedule({ seed: 55, workers: 5, seconds: 180, faultsPerKind: 3 }, timing).faults.some((f) => f.kind === 'stubborn-term')).toBe(false);
  });

  it('stubborn-term only when asked for, under the same rules; the process headed for it is the one the harness makes slow', () => {
    for (const seed of [1, 2, 55]) {
      const plan = planSchedule({ seed, workers: 5, seconds: 400, faultsPerKind: 3, kinds: allKinds }, timing);
      const stubborn = plan.faults.filter((f) => f.kind === 'stubborn-term');
      expect(stubborn).toHaveLength(3);
      for (const f of plan.faults) {
        const busy = busyInterval(f);
        if (!busy) continue;
        const concurrent = plan.faults.filter((g) => {
          const other = busyInterval(g);
          return other !== undefined && other[0] <= busy[0] && busy[0] < other[1];
        });
        expect(concurrent.length, `seed ${seed}: faults out at ${busy[0]}`).toBeLessThanOrEqual(plan.maxDown);
      }
      for (const f of stubborn) {
        if (f.kind !== 'stubborn-term') continue;
        // The process in its slot just before it is headed for it; one spawned after it is not.
        const previous = plan.faults.filter((g) => (g.kind === 'kill' || g.kind === 'term' || g.kind === 'stubborn-term') && g.slot === f.slot && g.atMs < f.atMs).at(-1) as Extract<PlannedFault, { replaceAfterMs: number }> | undefined;
        expect(stubbornTermAhead(plan, f.slot, previous ? previous.atMs + previous.replaceAfterMs : Number.NEGATIVE_INFINITY)).toBe(f);
        const next = stubbornTermAhead(plan, f.slot, f.atMs + f.replaceAfterMs);
        expect(next === undefined || next.atMs > f.atMs).toBe(true);
      }
    }
    // Only some kinds: the others are not planned at all.
    const two = planSchedule({ seed: 3, workers: 5, seconds: 200, faultsPerKind: 2, kinds: ['kill', 'stubborn-term'] }, timing);
    expect(two.faults.map((f) => f.kind).sort()).toEqual(['kill', 'kill', 'stubborn-term', 'stubborn-term']);
    // A kill planned on the slot first ends the process before the stubborn-term: that process is not made slow.
    const plan = { faults: [{ id: 1, kind: 'kill', atMs: 10_000, slot: 0, replaceAfterMs: 2000, reuseId: false }, { id: 2, kind: 'stubborn-term', atMs: 30_000, slot: 0, replaceAfterMs: 2000, reuseId: false }] as PlannedFault[] };
    expect(stubbornTermAhead(plan, 0, Number.NEGATIVE_INFINITY)).toBeUndefined();
    expect(stubbornTermAhead(plan, 0, 12_000)).toBe(plan.faults[1]);
    expect(stubbornTermAhead(plan, 1, 12_000)).toBeUndefined();
  });

  it('refuses more faults than the time allows, and says how long they need', () => {
    expect(() => planSchedule({ seed: 54, workers: 5, seconds: 60, faultsPerKind: 3 }, timing)).toThrow(ScheduleError);
    expect(() => planSchedule({ seed: 54, workers: 5, seconds: 60, faultsPerKind: 3 }, timing)).toThrow(/need about --seconds \d+/);
  });

  it('refuses nonsense on the command line', () => {
    expect(() => parseChaosArgs(['--workers', '0'])).toThrow(UsageError);
    expect(() => parseChaosArgs(['--workers', 'five'])).toThrow(/--workers must be a whole number/);
    expect(() => parseChaosArgs(['--bogus'])).toThrow(/Unknown option '--bogus'/);
    expect(() => parseChaosArgs(['extra'])).toThrow(UsageError);
    expect(parseChaosArgs(['--seed', '7', '--seconds', '90'])).toMatchObject({ seed: 7, seconds: 90, workers: 5, finiteTasks: 0, kinds: undefined });
    // Opt-in kinds and finite tasks; kinds come back in the canonical order.
    expect(parseChaosArgs(['--kinds', 'stubborn-term,kill', '--finite-tasks', '8'])).toMatchObject({ kinds: ['kill', 'stubborn-term'], finiteTasks: 8 });
    expect(() => parseChaosArgs(['--kinds', 'kill,sigterm'])).toThrow(/--kinds takes a comma-separated list of kill, .*stubborn-term; got "kill,sigterm"/);
    expect(() => parseChaosArgs(['--kinds', 'kill,kill'])).toThrow(/names a kind twice/);
    expect(() => parseChaosArgs(['--finite-tasks', 'many'])).toThrow(/--finite-tasks must be a whole number/);
  });

  it('npm run chaos with nonsense: one line, exit code 2, nothing started', () => {
    for (const args of [['--workers', '0'], ['--bogus'], ['--seconds', '30', '--faults', '3']]) {
      const out = spawnSync(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(root, 'test', 'chaos', 'run.ts'), ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(out.status, args.join(' ')).toBe(2);
      expect(out.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(out.stderr).toMatch(/^chaos: /);
      expect(out.stdout).toBe('');
    }
  });
});

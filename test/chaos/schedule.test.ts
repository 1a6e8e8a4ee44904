import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseChaosArgs, UsageError } from './options.js';
import { planSchedule, ScheduleError, type PlannedFault } from './schedule.js';

/** The fault schedule and the command line of `npm run chaos`, without running anything. */
const timing = { boundMs: 7000, driftBound: 1.5, storeRestartMs: 6000, stallMaxMs: 2500 };
const root = join(import.meta.dirname, '..', '..');

function busyInterval(f: PlannedFault): [number, number] | undefined {
  if (f.kind === 'kill' || f.kind === 'term') return [f.atMs, f.atMs + f.replaceAfterMs];
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

  it('refuses more faults than the time allows, and says how long they need', () => {
    expect(() => planSchedule({ seed: 54, workers: 5, seconds: 60, faultsPerKind: 3 }, timing)).toThrow(ScheduleError);
    expect(() => planSchedule({ seed: 54, workers: 5, seconds: 60, faultsPerKind: 3 }, timing)).toThrow(/need about --seconds \d+/);
  });

  it('refuses nonsense on the command line', () => {
    expect(() => parseChaosArgs(['--workers', '0'])).toThrow(UsageError);
    expect(() => parseChaosArgs(['--workers', 'five'])).toThrow(/--workers must be a whole number/);
    expect(() => parseChaosArgs(['--bogus'])).toThrow(/Unknown option '--bogus'/);
    expect(() => parseChaosArgs(['extra'])).toThrow(UsageError);
    expect(parseChaosArgs(['--seed', '7', '--seconds', '90'])).toMatchObject({ seed: 7, seconds: 90, workers: 5 });
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

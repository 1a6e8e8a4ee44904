import { describe, expect, it } from 'vitest';
import { configurations, formatResult, runConfiguration, spinAvailable, spinMissing, type Result } from '../tools/model-check.js';

/**
 * The protocol's Promela model (model/keeper.pml), checked exhaustively by SPIN in its small
 * configuration: the correct model satisfies every claim, and each broken variant violates
 * the claim it breaks, with a counterexample that replays. docs/model.md has the figures.
 */
describe('model check (SPIN)', () => {
  it('the correct model holds every claim; every broken variant fails its own, with a trail', () => {
    if (!spinAvailable()) throw new Error(spinMissing);
    const started = performance.now();
    const results: Result[] = runConfiguration(configurations.small, (r) => process.stdout.write(`${formatResult(r)}\n`));
    const states = results.reduce((sum, r) => sum + r.statesStored, 0);
    process.stdout.write(`model check: ${results.length} checks, ${states} states stored, ${((performance.now() - started) / 1000).toFixed(1)} s\n`);

    for (const r of results.filter((r) => r.check.expect === 'holds')) {
      expect({ variant: r.check.variant, claim: r.check.claim, faults: r.check.faults, errors: r.errors, complete: r.complete }).toEqual({
        variant: 'correct',
        claim: r.check.claim,
        faults: r.check.faults,
        errors: 0,
        complete: true,
      });
    }
    const broken = results.filter((r) => r.check.expect === 'violated');
    expect(new Set(broken.map((r) => r.check.variant)).size).toBe(broken.length);
    for (const r of broken) {
      expect(r.errors, `${r.check.variant} should violate ${r.check.claim}`).toBeGreaterThan(0);
      expect(r.trail?.steps ?? 0, `${r.check.variant}: counterexample replayed`).toBeGreaterThan(0);
      expect(r.trail?.story.length ?? 0, `${r.check.variant}: the trail tells what happened`).toBeGreaterThan(0);
    }
    // Every claim is held by the correct model and broken by at least one variant.
    for (const claim of ['one_runner', 'tokens_grow', 'declare_on_observed', 'orphans_owned']) {
      expect(results.some((r) => r.check.variant === 'correct' && r.check.claim === claim && r.ok)).toBe(true);
      expect(broken.some((r) => r.check.claim === claim && r.ok)).toBe(true);
    }
  }, 600_000);
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { faultKinds } from './chaos/fault-log.js';
import { buildProblem, runChaos } from './chaos/harness.js';

/**
 * A short seeded run of the fault harness (`npm run chaos`): five real worker processes,
 * sixty tasks, DynamoDB Local on disk, and at least three faults of every kind (SIGKILL,
 * SIGSTOP beyond the failover bound, partition, skewed clocks, store outage, network errors,
 * SIGTERM, short stalls) in about three minutes. The independent checker judges the logs; any violation
 * fails the test, and the message names the report with the details.
 *
 * The one timing it asserts is the documented failover bound, a property of the protocol.
 */
const seed = 55;

describe('fault harness', () => {
  it(`seed ${seed}: no task runs twice, tokens only grow, nothing is lost, no false takeover, takeovers within the bound`, async () => {
    expect(buildProblem(), 'the harness runs the built CLI: npm test builds it first').toBeUndefined();
    const out = mkdtempSync(join(tmpdir(), 'keeper-chaos-test-'));
    const progress: string[] = [];
    const run = await runChaos({ seconds: 180, workers: 5, tasks: 60, seed, faults: 3, periodMs: 500, requestTimeoutMs: undefined, out }, (line) => progress.push(line));
    const check = run.check;
    const where = `report: ${run.reportPath}`;
    expect(run.failure?.message, where).toBeUndefined();

    for (const kind of faultKinds) expect(check.faults[kind], `${kind} faults injected (${where})`).toBeGreaterThanOrEqual(3);
    const problems = Object.entries(check.violations).flatMap(([rule, list]) => list.map((v) => `${rule}: ${v.text.split('\n')[0]}`));
    expect(problems, where).toEqual([]);
    // slowTakeovers (above) holds every takeover to the bound; this makes sure there were some.
    expect(check.takeover.count, `takeovers measured (${where})`).toBeGreaterThan(0);
    // Keep the evidence of a failing run; a passing one leaves nothing behind.
    rmSync(out, { recursive: true, force: true });
  }, 15 * 60_000);
});

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { runSchedule } from '../test/support/simulation.js';

/**
 * The oracle for refactors: a digest of each simulator schedule's full record (every store
 * call and reply, event, ring and log line of every node, in order, in virtual time). A
 * structural change must leave every digest as it was; a change that alters any is a change
 * of behaviour and goes in its own commit, with the new digests.
 *
 *   npx tsx tools/sim-digests.ts write [file] [seeds]   record the digests of seeds 1..N
 *   npx tsx tools/sim-digests.ts check [file]           re-run and compare; exit 1 on any difference
 *   npx tsx tools/sim-digests.ts show <seed>            print one schedule's record
 */
const [mode = 'check', arg = 'tools/sim-digests.json', seedsArg = '1000'] = process.argv.slice(2);

/** A node's joinedAt is wall-clock time (its identity across lost join replies), the one thing in a record that is not virtual. */
const wallClock = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g;
const stable = (line: string) => line.replace(wallClock, '<wall-clock>');

async function digest(seed: number): Promise<{ digest: string; lines: number }> {
  const hash = createHash('sha256');
  let lines = 0;
  await runSchedule(seed, {
    record: (line) => {
      hash.update(stable(line)).update('\n');
      lines += 1;
    },
  });
  return { digest: hash.digest('hex').slice(0, 16), lines };
}

if (mode === 'show') {
  await runSchedule(Number(arg), { record: (line) => process.stdout.write(`${stable(line)}\n`) });
} else if (mode === 'write') {
  const out: Record<string, string> = {};
  for (let seed = 1; seed <= Number(seedsArg); seed++) out[seed] = (await digest(seed)).digest;
  writeFileSync(arg, `${JSON.stringify(out, null, 1)}\n`);
  process.stdout.write(`wrote ${Object.keys(out).length} digests to ${arg}\n`);
} else if (mode === 'check') {
  const expected = JSON.parse(readFileSync(arg, 'utf8')) as Record<string, string>;
  const differ: number[] = [];
  for (const [seed, want] of Object.entries(expected)) {
    const got = (await digest(Number(seed))).digest;
    if (got !== want) differ.push(Number(seed));
  }
  process.stdout.write(`${Object.keys(expected).length - differ.length} of ${Object.keys(expected).length} schedules unchanged${differ.length ? `; differ: ${differ.slice(0, 50).join(', ')}${differ.length > 50 ? ', ...' : ''}` : ''}\n`);
  process.exitCode = differ.length ? 1 : 0;
} else {
  process.stderr.write(`usage: sim-digests write|check [file] [seeds] | show <seed>\n`);
  process.exitCode = 2;
}

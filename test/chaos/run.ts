import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../lib/config.js';
import { summarize } from './checker.js';
import { buildProblem, HarnessAbortedError, planRun, runChaos } from './harness.js';
import { parseChaosArgs, UsageError } from './options.js';
import { ScheduleError } from './schedule.js';

/**
 * `npm run chaos -- [--seconds N] [--workers N] [--tasks N] [--seed S] [--faults N] [--period-ms P] [--out DIR]`
 * Exit codes: 0 no violations, 1 violations (or the harness failed), 2 bad use, 130 interrupted.
 */
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
const say = (line: string) => process.stdout.write(`${line}\n`);
const root = fileURLToPath(new URL('../..', import.meta.url));

let options;
try {
  options = parseChaosArgs(process.argv.slice(2));
  planRun(options); // refuses impossible schedules before anything starts
} catch (error) {
  if (error instanceof UsageError || error instanceof ScheduleError || error instanceof ConfigError) {
    process.stderr.write(`chaos: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

const stale = options.keeper === undefined ? buildProblem() : undefined;
if (stale) {
  say(`chaos: ${stale}; building it (npm run build)`);
  const built = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) {
    process.stderr.write('chaos: the build failed; fix it and try again\n');
    process.exit(1);
  }
}

const interrupt = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupt.signal.aborted) return; // teardown is under way
    say(`\nchaos: ${signal}; ending every worker and DynamoDB Local ...`);
    interrupt.abort();
  });
}

try {
  const run = await runChaos(options, say, interrupt.signal);
  say('');
  for (const line of summarize(run.check)) say(line);
  for (const finding of run.check.findings) say(`finding: ${finding.split('\n')[0]}`);
  say(`\nreport: ${run.reportPath}\ntimeline: ${run.svgPath}`);
  if (run.failure) process.stderr.write(`chaos: the harness could not finish the run: ${run.failure.message.split('\n')[0]}\n`);
  process.exit(run.check.ok && !run.failure ? 0 : 1);
} catch (error) {
  if (error instanceof HarnessAbortedError) {
    say('chaos: interrupted; everything the harness started has been stopped');
    process.exit(130);
  }
  process.stderr.write(`chaos: ${(error as Error).message}\n`);
  process.exit(1);
}

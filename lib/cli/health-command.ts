import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { checkHealth, healthTimeoutMs } from '../worker-health.js';

/**
 * `keeper health`: asks the worker on this host whether it has joined and holds a valid lease
 * (lib/worker-health.ts). Prints one line; exits 0 when healthy, 1 when not (or when no worker
 * answers in time), 2 on bad use. Kept apart from the rest of the CLI, which loads the AWS SDK:
 * an orchestrator runs this every few seconds, on a fraction of a CPU.
 */
export class UnhealthyError extends Error {
  override name = 'UnhealthyError';
}
/** Bad use that the option parsers cannot see (no port given anywhere): exit 2. */
export class HealthUsageError extends Error {
  override name = 'HealthUsageError';
}

const portOf = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > 65_535) throw new InvalidArgumentError(`${name} must be a port number from 1 to 65535`);
  return Number(value);
};

export function healthCommand(): Command {
  return new Command('health')
    .description('ask the worker on this host whether it has joined and holds a valid lease: prints one line, exits 0 if healthy, 1 if not')
    .option('--port <n>', "the worker's health port (default: $KEEPER_HEALTH_PORT)", portOf('--port'))
    .option('--timeout-ms <n>', 'how long to wait for the answer; none in time is unhealthy', (v: string) => {
      if (!/^\d+$/.test(v.trim()) || Number(v) < 1) throw new InvalidArgumentError('--timeout-ms must be a whole number >= 1');
      return Number(v);
    }, healthTimeoutMs)
    .action(async (o: { port?: number; timeoutMs: number }) => {
      const fromEnv = process.env['KEEPER_HEALTH_PORT']?.trim();
      let port = o.port;
      if (port === undefined && fromEnv) {
        try {
          port = portOf('KEEPER_HEALTH_PORT')(fromEnv);
        } catch (error) {
          throw new HealthUsageError((error as Error).message);
        }
      }
      if (port === undefined) throw new HealthUsageError('no health port: give --port, or set KEEPER_HEALTH_PORT as for the worker');
      const report = await checkHealth({ port, timeoutMs: o.timeoutMs });
      process.stdout.write(`${report.line}\n`);
      if (!report.healthy) throw new UnhealthyError(report.line);
    });
}

/** `keeper health ...` on its own: what bin/keeper.js runs for that verb. Returns the exit code. */
export async function healthMain(argv: string[]): Promise<number> {
  const program = new Command('keeper').exitOverride().configureOutput({ writeErr: (text) => process.stderr.write(text) });
  program.addCommand(healthCommand().exitOverride());
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof UnhealthyError) return 1;
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2; // commander printed it
    if (error instanceof HealthUsageError) {
      process.stderr.write(`keeper: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`keeper: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

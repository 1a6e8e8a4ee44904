import { demoHandler } from '../lib/demo.js';
import type { TaskContext } from '../lib/tasks.js';
import { LockWorker } from './lock-worker.js';
import { RunLedger } from './run-ledger.js';
import { taskIds } from './tables.js';

/**
 * One baseline worker as its own OS process, for the memory scenario: it holds a lock per task
 * and runs keeper's own demo handler (a 100 ms loop) on each, so the two processes do the same
 * work. Bundled by the bench with esbuild (dependencies stay in node_modules) and run with
 * plain `node`, as `bin/keeper.js` is. Prints `{"held":N}` once a second.
 *
 *   node lock-worker-process.mjs <endpoint> <table> <tasks>
 */
const [endpoint, table, taskArg] = process.argv.slice(2);
if (!endpoint || !table || !taskArg) {
  process.stderr.write('usage: lock-worker-process <endpoint> <table> <tasks>\n');
  process.exit(2);
}
const tasks = taskIds(Number(taskArg));
const runs = new Map<string, AbortController>();
const handler = demoHandler();

/** The ledger's start and stop hooks start and stop the demo handler. */
class RunningLedger extends RunLedger {
  override started(task: string, node: string, at?: number): void {
    super.started(task, node, at);
    const controller = new AbortController();
    runs.set(task, controller);
    const ctx: TaskContext = { task: { id: task, type: 'demo', payload: null, attempts: 0 }, token: 0, nodeId: node, signal: controller.signal, isValid: () => !controller.signal.aborted, checkpoint: async () => {} };
    void Promise.resolve(handler(ctx)).catch(() => {});
  }

  override stopped(task: string, node: string, at?: number): void {
    super.stopped(task, node, at);
    runs.get(task)?.abort();
    runs.delete(task);
  }
}

const worker = new LockWorker({ id: 'mem-lock', endpoint, table, tasks, capacity: tasks.length, ledger: new RunningLedger(), initialSpreadMs: 0 });
worker.start();
setInterval(() => process.stdout.write(`${JSON.stringify({ held: worker.heldCount })}\n`), 1000);
process.on('SIGTERM', () => void worker.stop().finally(() => process.exit(0)));

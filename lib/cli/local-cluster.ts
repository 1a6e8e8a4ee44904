import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TaskAdmin } from '../admin.js';
import { startLocalDb } from '../local-db.js';
import { createDynamoClient, documentClient } from '../store/client.js';
import { DynamoStore } from '../store/dynamo-store.js';
import type { NodeItem, TaskItem } from '../store/store.js';
import { ensureTable } from '../store/table.js';

/**
 * `npm start`: DynamoDB Local, a table, N real worker processes and M demo tasks; a live
 * view of who runs what; after a while one worker is killed with SIGKILL and the view shows
 * the takeover. Ctrl-C (or --duration) stops everything cleanly: workers leave gracefully,
 * then DynamoDB Local stops.
 */
export interface LocalClusterOptions {
  workers: number;
  tasks: number;
  periodMs: number;
  killAfter: number;
  duration?: number;
}

const keeperBin = fileURLToPath(new URL('../../bin/keeper.js', import.meta.url));

interface WorkerProcess {
  id: string;
  child: ChildProcess;
  killed: boolean;
}

export async function runLocalCluster(options: LocalClusterOptions): Promise<void> {
  const tty = process.stdout.isTTY === true;
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const logDir = join(process.cwd(), '.keeper-local');
  mkdirSync(logDir, { recursive: true });

  say('starting DynamoDB Local ...');
  const db = await startLocalDb();
  const table = 'keeper-local';
  const client = createDynamoClient({ endpoint: db.endpoint, requestTimeoutMs: 3000 });
  const store = new DynamoStore({ client: documentClient(client), table });
  const admin = new TaskAdmin(store);
  await ensureTable(client, table);
  for (let i = 1; i <= options.tasks; i++) await admin.add({ id: `task-${String(i).padStart(2, '0')}`, type: 'demo', payload: { n: i } });
  say(`DynamoDB Local at ${db.endpoint}, table ${table}, ${options.tasks} demo tasks; worker logs in ${logDir}`);

  const started = performance.now();
  const elapsed = () => ((performance.now() - started) / 1000).toFixed(1);
  const events: string[] = [];
  const event = (text: string) => {
    events.push(`${elapsed().padStart(6)}s  ${text}`);
    if (!tty) say(`${elapsed()}s ${text}`);
  };

  const workers: WorkerProcess[] = [];
  for (let i = 1; i <= options.workers; i++) {
    const id = `worker-${i}`;
    const log = openSync(join(logDir, `${id}.log`), 'w');
    // Own process group: Ctrl-C reaches only this supervisor, which then stops the workers in order.
    const child = spawn(process.execPath, [keeperBin, 'worker', '--table', table, '--endpoint', db.endpoint, '--node-id', id, '--period-ms', String(options.periodMs), '--doorbell-host', '127.0.0.1'], {
      stdio: ['ignore', log, 'pipe'],
      detached: true,
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    const entry: WorkerProcess = { id, child, killed: false };
    workers.push(entry);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record['msg'] === 'declared peer dead') event(`${id} declared ${String(record['peer'])} dead (its counter stood still for ${String(record['staleness'])} cluster ticks)`);
        else if (record['msg'] === 'took over tasks of dead node') event(`${id} handed out ${String(record['moved'])} tasks of ${String(record['dead'])} in ${String(record['ms'])} ms`);
        else if (record['level'] === 'error') event(`${id}: ${String(record['msg'])}`);
      } catch {
        event(`${id}: ${line}`);
      }
    });
    child.on('exit', (code, signal) => {
      if (!entry.killed && !stopping) event(`${id} exited on its own (${signal ?? `code ${code}`}); see ${join(logDir, `${id}.log`)}`);
    });
  }
  event(`started ${options.workers} workers (period ${options.periodMs} ms)`);

  let stopping = false;
  let victim: { id: string; tasks: string[]; at: number } | undefined;
  let nodes: NodeItem[] = [];
  let tasks: TaskItem[] = [];

  const render = () => {
    const owners = new Map<string, string[]>();
    for (const t of tasks) if (t.owner) owners.set(t.owner, [...(owners.get(t.owner) ?? []), t.id.replace('task-', '')]);
    const lines = [`keeper local cluster  ${elapsed()}s  table ${table} at ${db.endpoint}  (Ctrl-C to stop)`, ''];
    for (const n of nodes) {
      const mine = owners.get(n.id) ?? [];
      const state = n.state === 'alive' ? 'alive' : n.state === 'dead' ? `DEAD (declared by ${n.deadBy ?? '?'})` : n.state;
      lines.push(`${n.id.padEnd(10)} ${state.padEnd(28)} counter ${String(n.counter).padStart(5)}  ${String(mine.length).padStart(3)} tasks  ${mine.join(' ')}`);
    }
    const unowned = tasks.filter((t) => t.state === 'ready' && !t.owner).length;
    lines.push('', `unowned tasks: ${unowned}`, '', 'events:', ...events.slice(-12));
    process.stdout.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
  };

  const refresh = async () => {
    try {
      ({ nodes, tasks } = await admin.status());
    } catch {
      return;
    }
    if (victim && victim.tasks.length > 0) {
      const byId = new Map(tasks.map((t) => [t.id, t]));
      const alive = new Set(nodes.filter((n) => n.state === 'alive').map((n) => n.id));
      if (victim.tasks.every((id) => alive.has(byId.get(id)?.owner ?? '') && byId.get(id)?.owner !== victim!.id)) {
        event(`all ${victim.tasks.length} tasks of ${victim.id} run elsewhere again, ${((performance.now() - victim.at) / 1000).toFixed(1)} s after the kill`);
        victim.tasks = [];
      }
    }
    if (tty) render();
  };

  const timer = setInterval(() => void refresh(), 500);
  const killTimer =
    options.killAfter > 0
      ? setTimeout(() => {
          const target = workers[workers.length - 1]!;
          const held = tasks.filter((t) => t.owner === target.id).map((t) => t.id);
          target.killed = true;
          target.child.kill('SIGKILL');
          victim = { id: target.id, tasks: held, at: performance.now() };
          event(`killed ${target.id} (pid ${target.child.pid}) with SIGKILL while it held ${held.length} tasks`);
        }, options.killAfter * 1000)
      : undefined;

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (options.duration !== undefined) setTimeout(resolve, options.duration * 1000);
  });
  stopping = true;
  clearInterval(timer);
  if (killTimer) clearTimeout(killTimer);
  say('\nstopping: workers leave gracefully, then DynamoDB Local stops ...');
  await Promise.all(
    workers
      .filter((w) => w.child.exitCode === null && w.child.signalCode === null)
      .map(
        (w) =>
          new Promise<void>((resolve) => {
            const force = setTimeout(() => w.child.kill('SIGKILL'), 10_000);
            w.child.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            w.child.kill('SIGTERM');
          }),
      ),
  );
  client.destroy();
  await db.stop();
  say('stopped.');
}

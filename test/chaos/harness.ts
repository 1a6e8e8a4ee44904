import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { earliestDeclarationMs, failoverBoundMs, resolveConfig } from '../../lib/config.js';
import { demoWorkIntervalMs } from '../../lib/demo.js';
import { createDynamoClient, documentClient } from '../../lib/store/client.js';
import { DynamoStore } from '../../lib/store/dynamo-store.js';
import { ensureTable } from '../../lib/store/table.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { CloudModel } from '../support/cloud-model.js';
import { checkRun, scanTable, type CheckResult } from './checker.js';
import { DurableLocalDb } from './durable-local-db.js';
import { FaultLog, type FaultKind, type FaultRecord } from './fault-log.js';
import type { ChaosOptions } from './options.js';
import { writeReport, type MachineInfo } from './report.js';
import { planSchedule, quietTailMs, stubbornEvery, stubbornLeaveTimeoutMs, stubbornStopDelayMs, stubbornTermAhead, type Plan, type PlannedFault } from './schedule.js';
import { SeededRandom } from './seeded-random.js';
import { StoreProbe } from './store-probe.js';
import { TableHistory } from './table-history.js';
import { WorkerProcess } from './worker-process.js';

/**
 * The fault harness: DynamoDB Local on disk, one table, N real `keeper worker` processes, each
 * behind its own fault proxy, and a seeded schedule of faults. When the schedule has run, the
 * final table is read, every process is ended, the independent checker reads the logs, and
 * a report is written.
 *
 * Protocol settings: a drift bound of 1.5 (clocks may run 1.5x fast or slow, so two clocks
 * may differ by 2.25x) needs staleTicks >= 8 with the request timeout below (half a period,
 * which the safety condition's read window counts twice). Every worker runs the same
 * settings (the core refuses mixed ones).
 */
export const chaosProtocol = { staleTicks: 8, driftBound: 1.5 } as const;

/**
 * The request timeout d defaults to half a period here, not the library's 0.2 P: DynamoDB
 * Local on two shared cores (with Java, eight workers and other test runs beside it) often
 * answers in more than 100 ms, and with d = 100 ms most heartbeats of an otherwise healthy
 * cluster fail, which turns every run into one long brown-out instead of the faults it plans.
 * At P = 500, K = 6, f = 1.5 the config accepts d up to about 385 ms.
 */
export const defaultRequestTimeoutMs = (periodMs: number) => periodMs / 2;

/**
 * How long a graceful leave may take before the harness calls it stuck: two failover bounds
 * (a leave hands its tasks over and waits for its in-flight maintenance; under a network-error
 * window each of those writes may take several attempts).
 */
const leaveLimitFactor = 2;
/** After the snapshot: how long work events are read to see who runs each task at the end. */
const convergenceWindowMs = 2000;
/** DynamoDB Local took about 4 s to restart on this machine when idle; planned with slack. */
const storeRestartAllowanceMs = 6000;

/** How long each finite `demo-job` task works before its side effect: a few periods, so that faults meet some mid-run. */
const finiteWorkMs = 3000;

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export interface ChaosRun {
  dir: string;
  check: CheckResult;
  reportPath: string;
  svgPath: string;
  /** Set when the harness itself could not finish the run; the report covers what ran. */
  failure?: Error;
}

export class HarnessAbortedError extends Error {
  override name = 'HarnessAbortedError';
}

interface Instance {
  name: string;
  slot: number;
  node: string;
  proc: WorkerProcess;
  proxy: FaultProxy;
  /** Started with slow demo handlers on its leave and a short leave timeout, for a stubborn-term. */
  stubborn: boolean;
}

/** Why dist/ cannot be used as it is, or undefined. The workers run the built CLI. */
export function buildProblem(root = repoRoot): string | undefined {
  const main = join(root, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) return 'dist/ has not been built';
  const newest = (dir: string, ext: string): number => {
    let max = 0;
    for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (entry.isFile() && entry.name.endsWith(ext)) max = Math.max(max, statSync(join(entry.parentPath, entry.name)).mtimeMs);
    }
    return max;
  };
  if (newest(join(root, 'lib'), '.ts') > statSync(main).mtimeMs) return 'dist/ is older than lib/';
  return undefined;
}

/**
 * The workers run from a copy of bin/ and dist/ taken at the start, not from the checkout:
 * another engineer may rebuild dist/ during a 30-minute run, and a replacement worker must
 * not start with different code (or a half-written build) than the workers it joins.
 */
function snapshotBuild(from: string, into: string): string {
  mkdirSync(into, { recursive: true });
  cpSync(join(from, 'dist'), join(into, 'dist'), { recursive: true });
  cpSync(join(from, 'bin'), join(into, 'bin'), { recursive: true });
  copyFileSync(join(from, 'package.json'), join(into, 'package.json')); // "type": "module"
  symlinkSync(join(repoRoot, 'node_modules'), join(into, 'node_modules'), 'dir');
  return join(into, 'bin', 'keeper.js');
}

function machineInfo(keeperRoot: string): MachineInfo {
  const java = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const git = (args: string[]) => spawnSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).stdout.trim();
  // A build of another tree (--keeper, e.g. an export of a commit) names itself in COMMIT.
  const exported = existsSync(join(keeperRoot, 'COMMIT')) ? readFileSync(join(keeperRoot, 'COMMIT'), 'utf8').trim() : undefined;
  if (keeperRoot !== repoRoot) {
    return { ...baseInfo(java), commit: exported ? `${exported} (exported and built apart from the checkout)` : `build in ${keeperRoot}` };
  }
  const dirty = git(['status', '--porcelain', '--', 'lib', 'bin']).length > 0;
  return { ...baseInfo(java), commit: `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' (with uncommitted changes in lib/ or bin/)' : ''}` };
}

function baseInfo(java: { stderr: string; stdout: string }): MachineInfo {
  return {
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    os: `${process.platform} ${release()}`,
    node: process.version,
    java: (java.stderr || java.stdout || 'unknown').split('\n')[0]!.trim(),
    commit: '',
    loadBefore: loadavg().map((x) => x.toFixed(2)).join(' '),
    loadAfter: '',
  };
}

function stamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export function resolveChaosConfig(periodMs: number, requestTimeoutMs = defaultRequestTimeoutMs(periodMs)) {
  const config = resolveConfig({ periodMs, requestTimeoutMs, ...chaosProtocol });
  return { config, boundMs: failoverBoundMs(config), earliestMs: earliestDeclarationMs(config), stallMaxMs: stallMaxMs(config) };
}

/**
 * The longest stall that must never get a node declared dead. Its last heartbeat before the
 * stall, sent at s, may have landed although the stall held its reply past d: the node then
 * sends the same value again after the stall (no change in the table), and the next value
 * only a period after that reply, P - d later (Heartbeat). That value lands by
 * s + S + (P + d) * f on a clock up to f slow, and no one may declare the node before
 * s + earliestDeclarationMs. A tenth of a period of margin on top.
 */
function stallMaxMs(c: ReturnType<typeof resolveConfig>): number {
  return earliestDeclarationMs(c) - (c.periodMs + c.requestTimeoutMs) * c.driftBound - c.periodMs / 10;
}

/** Plans the run without starting anything: the refusal of impossible schedules happens here. */
export function planRun(options: ChaosOptions): Plan {
  const { boundMs, stallMaxMs } = resolveChaosConfig(options.periodMs, options.requestTimeoutMs);
  return planSchedule(
    {
      seed: options.seed,
      workers: options.workers,
      seconds: options.seconds,
      ...(options.faults !== undefined ? { faultsPerKind: options.faults } : {}),
      ...(options.kinds !== undefined ? { kinds: options.kinds } : {}),
    },
    { boundMs, driftBound: chaosProtocol.driftBound, storeRestartMs: storeRestartAllowanceMs, stallMaxMs },
  );
}

export async function runChaos(options: ChaosOptions, say: (line: string) => void, abort?: AbortSignal): Promise<ChaosRun> {
  const { config, boundMs, earliestMs } = resolveChaosConfig(options.periodMs, options.requestTimeoutMs);
  const plan = planRun(options);
  const keeperRoot = resolve(options.keeper ?? repoRoot);
  const problem = buildProblem(keeperRoot);
  if (problem) throw new Error(`${problem} (in ${keeperRoot}); run \`npm run build\` there first`);

  const dir = resolve(options.out ?? join(repoRoot, 'reports', `chaos-${stamp()}-seed${options.seed}`));
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const keeperBin = snapshotBuild(keeperRoot, join(dir, 'keeper-build'));
  const machine = machineInfo(keeperRoot);
  const log = new FaultLog(join(dir, 'faults.jsonl'));
  const table = `chaos-${options.seed}`;
  const rng = new SeededRandom(options.seed ^ 0x5eed);
  const started = performance.now();
  let t0 = started;
  const at = () => `[${((performance.now() - t0) / 1000).toFixed(1).padStart(7)}s]`;
  const note = (line: string) => say(`${at()} ${line}`);

  const db = new DurableLocalDb();
  const instances: Instance[] = [];
  const slots: Array<Instance | undefined> = Array.from({ length: options.workers }, () => undefined);
  const generation = Array.from({ length: options.workers }, () => 0);
  let spawned = 0;
  let ending = false;
  const background = new Set<Promise<unknown>>();
  let fatal: Error | undefined;
  /** How far the schedule has slipped behind plan because store restarts took longer than allowed for. */
  let shiftMs = 0;
  const leaveLimitMs = leaveLimitFactor * boundMs;
  /** The end state is not read before this (performance.now() time). */
  let settleUntil = 0;
  const track = (p: Promise<unknown>) => {
    const wrapped = p.catch((error: Error) => {
      fatal ??= error;
    });
    background.add(wrapped);
    void wrapped.finally(() => background.delete(wrapped));
  };
  // Last resort if the harness dies without its teardown (an uncaught error): no orphans.
  const killAll = () => {
    for (const i of instances) if (i.proc.running) i.proc.signal('SIGKILL');
  };
  process.once('exit', killAll);

  const spawnWorker = async (slot: number, reason: 'initial' | 'replaces-kill' | 'replaces-term' | 'replaces-exit', node?: string): Promise<Instance> => {
    generation[slot]! += 1;
    const name = `w${slot + 1}.${generation[slot]}`;
    const proxy = new FaultProxy(db.endpoint, () => rng.next());
    await proxy.start();
    const clock = plan.clocks[spawned] ?? { rate: 1, offsetMs: 0 };
    spawned += 1;
    // Headed for a stubborn-term: slow demo handlers on its leave and a short leave timeout.
    // Every other process runs as in a default run.
    const nowMs = reason === 'initial' ? Number.NEGATIVE_INFINITY : performance.now() - t0 - shiftMs;
    const stubborn = stubbornTermAhead(plan, slot, nowMs) !== undefined;
    const proc = new WorkerProcess({
      instance: name,
      slot: `w${slot + 1}`,
      node: node ?? name,
      keeperBin,
      table,
      endpoint: proxy.endpoint,
      periodMs: config.periodMs,
      staleTicks: config.staleTicks,
      driftBound: config.driftBound,
      requestTimeoutMs: config.requestTimeoutMs,
      clock,
      auditPath: join(logs, `${name}.audit.jsonl`),
      stderrPath: join(logs, `${name}.stderr.log`),
      stdoutPath: join(logs, `${name}.stdout.log`),
      ...(stubborn ? { stubborn: { leaveTimeoutMs: stubbornLeaveTimeoutMs(boundMs), stopDelayMs: stubbornStopDelayMs(boundMs), stopDelayEvery: stubbornEvery } } : {}),
    });
    const instance: Instance = { name, slot, node: node ?? name, proc, proxy, stubborn };
    instances.push(instance);
    slots[slot] = instance;
    log.write({
      type: 'spawn',
      instance: name,
      slot: `w${slot + 1}`,
      node: instance.node,
      pid: proc.pid,
      clockRate: clock.rate,
      clockOffsetMs: clock.offsetMs,
      audit: relative(dir, proc.spec.auditPath),
      stderr: relative(dir, proc.spec.stderrPath),
      reason,
      ...(stubborn ? { stubborn: true } : {}),
    });
    const skew = clock.rate !== 1 || clock.offsetMs !== 0 ? ` clock x${clock.rate} ${clock.offsetMs >= 0 ? '+' : ''}${(clock.offsetMs / 3_600_000).toFixed(2)} h` : '';
    if (reason !== 'initial') note(`start ${name} as node ${instance.node} (pid ${proc.pid}, ${reason})${skew}`);
    void proc.exited.then(({ code, signal }) => {
      if (ending && !proc.endedByHarness) proc.endedByHarness = true;
      const expected = proc.endedByHarness;
      const record: FaultRecord = { type: 'exit', instance: name, node: instance.node, code, signal, expected };
      if (!expected) {
        record.stderrTail = proc.stderrTail(20);
        note(`FINDING: ${name} exited on its own (${signal ?? `code ${code}`}); stderr tail:\n${record.stderrTail}`);
      }
      log.write(record);
      if (!expected && !ending && slots[slot] === instance) {
        slots[slot] = undefined;
        // Keep the cluster at its size; the exit itself stays a finding.
        track(sleepMs(boundMs, abort).then(() => (ending ? undefined : spawnWorker(slot, 'replaces-exit'))));
      }
    });
    return instance;
  };

  let lastTrouble = performance.now();
  let history: TableHistory | undefined;
  let probe: StoreProbe | undefined;
  // Joins are seen in the workers' own logs ("worker running"); the harness only watches.
  const watchLogs = () => {
    for (const i of instances) {
      for (const line of i.proc.readNewStderr()) {
        let record: Record<string, unknown>;
        try {
          record = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (record['msg'] === 'worker running' && !i.proc.joined) {
          i.proc.joined = true;
          log.write({ type: 'joined', instance: i.name, node: i.node });
        } else if (record['msg'] === 'declared peer dead') {
          note(`${i.name} declared ${String(record['peer'])} dead`);
        } else if (record['msg'] === 'heartbeat failed' || String(record['msg']).startsWith('lease expired')) {
          lastTrouble = performance.now();
        }
      }
    }
  };
  const watcher = setInterval(watchLogs, 250);

  const teardown = async () => {
    ending = true;
    clearInterval(watcher);
    probe?.stop();
    await history?.stop();
    const waits = instances.map(async (i) => {
      if (i.proc.running) {
        i.proc.signal('SIGKILL');
        await Promise.race([i.proc.exited, sleepMs(10_000)]);
      }
      await i.proxy.close().catch(() => {});
    });
    await Promise.all(waits);
    await db.destroy().catch(() => {});
    process.removeListener('exit', killAll);
    const left = instances.filter((i) => pidAlive(i.proc.pid)).map((i) => `${i.name} (pid ${i.proc.pid})`);
    if (left.length > 0) throw new Error(`worker processes still alive after teardown: ${left.join(', ')}`);
  };

  let check: CheckResult | undefined;
  let failure: Error | undefined;
  let readyReached = false;
  try {
    say(`chaos: seed ${options.seed}, ${options.workers} workers, ${options.tasks} tasks, ${options.seconds} s, ${plan.faultsPerKind} faults of each kind; ` +
      `P ${config.periodMs} ms, K ${config.staleTicks}, f ${config.driftBound}, d ${config.requestTimeoutMs} ms, fence ${config.fenceMs} ms, failover bound ${boundMs.toFixed(0)} ms`);
    say(`chaos: output in ${dir}`);
    log.write({
      type: 'run',
      seed: options.seed,
      workers: options.workers,
      tasks: options.tasks,
      seconds: options.seconds,
      faultsPerKind: plan.faultsPerKind,
      ...(options.finiteTasks ? { finiteTasks: options.finiteTasks } : {}),
      ...(options.kinds ? { kinds: [...options.kinds] } : {}),
      table,
      settings: {
        periodMs: config.periodMs,
        staleTicks: config.staleTicks,
        driftBound: config.driftBound,
        requestTimeoutMs: config.requestTimeoutMs,
        handlerStopMs: config.handlerStopMs,
        fenceMs: config.fenceMs,
      },
      boundMs,
      earliestDeclarationMs: earliestMs,
      workIntervalMs: demoWorkIntervalMs,
    });
    writeFileSync(join(dir, 'plan.json'), `${JSON.stringify(plan, null, 2)}\n`);

    await db.start();
    const client = createDynamoClient({ endpoint: db.endpoint, requestTimeoutMs: 5000 });
    const store = new DynamoStore({ client: documentClient(client), table, requestTimeoutMs: 5000 });
    await ensureTable(client, table);
    const ids = Array.from({ length: options.tasks }, (_, i) => `task-${String(i + 1).padStart(4, '0')}`);
    const createdAt = new Date().toISOString();
    for (let i = 0; i < ids.length; i += 25) {
      await Promise.all(ids.slice(i, i + 25).map((id) => store.createTask({ id, type: 'demo', payload: { n: id } }, createdAt)));
    }
    client.destroy();
    log.write({ type: 'tasks', ids });
    say(`chaos: DynamoDB Local (on disk, ${db.dir}) at ${db.endpoint}, table ${table}, ${ids.length} tasks`);
    // Finite tasks (--finite-tasks): the first half now, the rest while the faults happen.
    const finiteIds = Array.from({ length: options.finiteTasks ?? 0 }, (_, i) => `job-${String(i + 1).padStart(4, '0')}`);
    const finiteNow = finiteIds.slice(0, Math.ceil(finiteIds.length / 2));
    const finiteLater = finiteIds.slice(finiteNow.length);
    if (finiteNow.length > 0) await addFinite(finiteNow);
    const finiteSet = new Set(finiteIds);

    for (let s = 0; s < options.workers; s++) await spawnWorker(s, 'initial');
    history = new TableHistory(db.endpoint, table, join(dir, 'table-history.jsonl'));
    history.start(options.tasks > 200 ? 2000 : 1000);
    probe = new StoreProbe(db.endpoint, table, config.requestTimeoutMs, log);
    probe.start();
    const joinDeadline = performance.now() + 60_000 + options.workers * 5000;
    while (!instances.every((i) => i.proc.joined)) {
      watchLogs();
      const dead = instances.find((i) => !i.proc.running);
      if (dead) throw new Error(`${dead.name} exited during start-up:\n${dead.proc.stderrTail(10)}`);
      if (performance.now() > joinDeadline) throw new Error(`workers did not join within ${Math.round((joinDeadline - started) / 1000)} s: ${instances.filter((i) => !i.proc.joined).map((i) => i.name).join(', ')}`);
      await sleepMs(100, abort);
    }
    // Start-up is the heaviest moment on a small machine (every worker loads at once, Java
    // warms up) and heartbeats fail for several seconds. Faults begin once the cluster has
    // settled: every task owned by a live node, and no failed heartbeat or fencing logged for
    // three seconds. Otherwise the first faults would be measured against a brown-out.
    const settleLimitMs = 60_000 + options.tasks * 200;
    const settleDeadline = performance.now() + settleLimitMs;
    for (;;) {
      watchLogs();
      await history.poll();
      const alive = new Set((history.latest?.nodes ?? []).filter((n) => n['state'] === 'alive').map((n) => String(n['id'])));
      // Finite tasks are left out: they finish, and their owner is not what settling means.
      const tasksOwned = (history.latest?.tasks ?? []).filter((t) => !finiteSet.has(String(t['id'])) && alive.has(String(t['owner']))).length;
      if (tasksOwned === options.tasks && performance.now() - lastTrouble > 3000) break;
      if (performance.now() > settleDeadline) {
        const text = `the cluster had not settled ${settleLimitMs / 1000} s after every worker joined (${tasksOwned} of ${options.tasks} tasks owned by live nodes, last failed heartbeat or fencing ${((performance.now() - lastTrouble) / 1000).toFixed(1)} s ago); faults start anyway`;
        log.write({ type: 'finding', text });
        note(`FINDING: ${text}`);
        break;
      }
      await sleepMs(250, abort);
    }
    log.write({ type: 'ready' });
    readyReached = true;
    t0 = performance.now();
    note(`all ${options.workers} workers joined (${((t0 - started) / 1000).toFixed(1)} s after start); faults begin`);

    const actions = [...plan.faults.flatMap((f) => actionsFor(f)), ...finiteActions(finiteLater)];
    actions.sort((a, b) => a.atMs - b.atMs);
    for (const action of actions) {
      await sleepMs(t0 + shiftMs + action.atMs - performance.now(), abort);
      if (fatal) throw fatal;
      // The store's restart is awaited here: nothing else is planned inside an outage window,
      // and if the restart overruns its allowance the rest of the schedule moves with it, so
      // that no later fault lands in the outage's shadow.
      if (action.inline) await action.run();
      else track(Promise.resolve().then(action.run));
    }
    await sleepMs(t0 + shiftMs + plan.lastEffectMs + quietTailMs - performance.now(), abort);
    await Promise.all([...background]);
    if (fatal) throw fatal;
    await sleepMs(settleUntil - performance.now(), abort);
    // As at the start: the end state is read once the cluster is calm (no failed heartbeat
    // or fencing for three seconds), or after a minute of waiting for it.
    const calmDeadline = performance.now() + 60_000;
    while (performance.now() - lastTrouble < 3000 && performance.now() < calmDeadline) {
      watchLogs();
      await sleepMs(250, abort);
    }
    if (performance.now() - lastTrouble < 3000) {
      const text = 'the cluster was still fencing or failing heartbeats a minute after the last fault; the end state is read anyway';
      log.write({ type: 'finding', text });
      note(`FINDING: ${text}`);
    }

    log.write({ type: 'end' });
    const snapshot = await scanTable(db.endpoint, table);
    writeFileSync(join(dir, 'table.json'), `${JSON.stringify(snapshot)}\n`);
    log.write({ type: 'snapshot', windowMs: convergenceWindowMs });
    await sleepMs(convergenceWindowMs + 200, abort);
    note('fault phase over; final table read; stopping everything');
    for (const i of instances) log.write({ type: 'proxy-stats', instance: i.name, ...i.proxy.stats });
  } catch (error) {
    // Once faults have begun, the logs are worth judging even if the harness cannot go on
    // (DynamoDB Local failing to restart, say): the failure goes into the fault log and the
    // report, and the run still fails.
    if (error instanceof HarnessAbortedError || !readyReached) throw error;
    failure = error as Error;
    log.write({ type: 'finding', text: `the harness stopped before the end of the run: ${failure.message.split('\n')[0]}` });
    note(`harness failure: ${failure.message.split('\n')[0]}; checking what ran`);
  } finally {
    await teardown();
  }
  machine.loadAfter = loadavg().map((x) => x.toFixed(2)).join(' ');
  const checkStarted = performance.now();
  check = await checkRun(dir);
  const checkMs = performance.now() - checkStarted;
  const timing = { totalMs: performance.now() - started, checkMs };
  // Kept so that `tsx test/chaos/checker.ts <dir>` can re-check the run and rewrite the report.
  writeFileSync(join(dir, 'machine.json'), `${JSON.stringify({ machine, timing }, null, 2)}\n`);
  const { reportPath, svgPath } = writeReport(dir, check, machine, timing);
  return { dir, check, reportPath, svgPath, ...(failure ? { failure } : {}) };

  /**
   * Creates finite `demo-job` tasks (and rings the cluster's task counter, as `keeper task add`
   * does), retrying through a store outage; logs them once they exist.
   */
  async function addFinite(jobIds: string[]): Promise<void> {
    const client = createDynamoClient({ endpoint: db.endpoint, requestTimeoutMs: 5000 });
    const store = new DynamoStore({ client: documentClient(client), table, requestTimeoutMs: 5000 });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          for (const id of jobIds) await store.createTask({ id, type: 'demo-job', payload: { workMs: finiteWorkMs } }, new Date().toISOString());
          await store.bumpCluster('tasks');
          break;
        } catch (error) {
          if (attempt >= 60 || ending) throw error;
          await sleepMs(1000, abort);
        }
      }
    } finally {
      client.destroy();
    }
    log.write({ type: 'finite-tasks', ids: jobIds });
  }

  /**
   * The later finite tasks, spread evenly over the fault phase (not part of the seeded plan,
   * which stays what it is without them), the last one a bound and its work before the last
   * effect, so that every one can complete before the end state is read.
   */
  function finiteActions(jobIds: string[]): Array<{ atMs: number; run: () => Promise<void> | void; inline?: boolean }> {
    const from = boundMs;
    const to = Math.max(from, plan.lastEffectMs - boundMs - finiteWorkMs);
    return jobIds.map((id, i) => ({ atMs: from + ((to - from) * (i + 1)) / (jobIds.length + 1), run: () => addFinite([id]) }));
  }

  function actionsFor(f: PlannedFault): Array<{ atMs: number; run: () => Promise<void> | void; inline?: boolean }> {
    const victim = (slot: number, kind: FaultKind) => {
      const i = slots[slot];
      if (!i || !i.proc.running) {
        log.write({ type: 'skip', fault: f.id, kind, slot: `w${slot + 1}`, reason: i ? `${i.name} is not running` : 'no worker in the slot' });
        note(`skip ${kind} on w${slot + 1}: nothing running there`);
        return undefined;
      }
      return i;
    };
    switch (f.kind) {
      case 'kill':
      case 'term':
      case 'stubborn-term': {
        let target: Instance | undefined;
        return [
          {
            atMs: f.atMs,
            run: () => {
              target = victim(f.slot, f.kind);
              if (!target) return;
              if (f.kind === 'kill') {
                target.proc.signal('SIGKILL');
                slots[f.slot] = undefined;
                log.write({ type: 'kill', fault: f.id, instance: target.name, node: target.node });
                note(`SIGKILL ${target.name} (pid ${target.proc.pid}); replacement in ${(f.replaceAfterMs / 1000).toFixed(1)} s`);
              } else {
                target.proc.signal('SIGTERM');
                slots[f.slot] = undefined;
                // Stubborn only if the process was started so (stubbornTermAhead at its spawn);
                // otherwise it is an ordinary leave, and the checker judges it as one.
                const stubborn = f.kind === 'stubborn-term' && target.stubborn;
                log.write({ type: 'term', fault: f.id, instance: target.name, node: target.node, ...(stubborn ? { stubborn: true } : {}) });
                note(`SIGTERM ${target.name} (graceful leave${stubborn ? ', some handlers ignore their signal' : ''}); replacement in ${(f.replaceAfterMs / 1000).toFixed(1)} s`);
                const leaving = target;
                track(
                  Promise.race([leaving.proc.exited, sleepMs(leaveLimitMs)]).then(() => {
                    if (!leaving.proc.running || ending) return;
                    const text = `${leaving.name} had not exited ${(leaveLimitMs / 1000).toFixed(1)} s after SIGTERM (a graceful leave that does not finish); killing it`;
                    log.write({ type: 'finding', text });
                    note(`FINDING: ${text}`);
                    leaving.proc.signal('SIGKILL');
                    // Its tasks now need a takeover, which the end state must not cut short.
                    settleUntil = Math.max(settleUntil, performance.now() + boundMs + quietTailMs);
                  }),
                );
              }
            },
          },
          {
            atMs: f.atMs + f.replaceAfterMs,
            run: async () => {
              if (!target) return;
              // A replacement under the same node id waits for the old process to be gone: two
              // live processes with one id is a configuration error the core refuses, not a fault.
              if (f.reuseId) await target.proc.exited;
              if (ending) return;
              await spawnWorker(f.slot, f.kind === 'kill' ? 'replaces-kill' : 'replaces-term', f.reuseId ? target.node : undefined);
            },
          },
        ];
      }
      // A stall is a short SIGSTOP: to the protocol, what a handler that blocks the event loop
      // does (timers late, replies waiting in the socket). Unlike a pause it must never get the
      // node declared dead, and the checker does not accept it as a reason.
      case 'pause':
      case 'stall': {
        const [stop, resume] = f.kind === 'pause' ? (['pause', 'resume'] as const) : (['stall', 'unstall'] as const);
        let target: Instance | undefined;
        return [
          {
            atMs: f.atMs,
            run: () => {
              target = victim(f.slot, f.kind);
              if (!target || !target.proc.signal('SIGSTOP')) return;
              log.write({ type: stop, fault: f.id, instance: target.name, node: target.node, plannedMs: f.durationMs });
              note(`SIGSTOP ${target.name} for ${f.kind === 'pause' ? `${(f.durationMs / 1000).toFixed(1)} s` : `${Math.round(f.durationMs)} ms (a stall)`}`);
            },
          },
          {
            atMs: f.atMs + f.durationMs,
            run: () => {
              if (!target?.proc.paused) return;
              target.proc.signal('SIGCONT');
              log.write({ type: resume, fault: f.id, instance: target.name, node: target.node });
              note(`SIGCONT ${target.name}`);
            },
          },
        ];
      }
      case 'partition': {
        let target: Instance | undefined;
        return [
          {
            atMs: f.atMs,
            run: () => {
              target = victim(f.slot, 'partition');
              if (!target) return;
              target.proxy.partition();
              log.write({ type: 'partition', fault: f.id, instance: target.name, node: target.node, plannedMs: f.durationMs });
              note(`partition ${target.name} for ${(f.durationMs / 1000).toFixed(1)} s`);
            },
          },
          {
            atMs: f.atMs + f.durationMs,
            run: () => {
              if (!target) return;
              target.proxy.heal();
              log.write({ type: 'heal', fault: f.id, instance: target.name, node: target.node });
              note(`heal ${target.name}`);
            },
          },
        ];
      }
      case 'net': {
        let targets: Instance[] = [];
        return [
          {
            atMs: f.atMs,
            run: () => {
              targets = f.slots.map((s) => slots[s]).filter((i): i is Instance => i !== undefined && i.proc.running);
              // One model for all of them: they share the table's partitions.
              const cloud = new CloudModel(f.cloud, () => rng.next());
              for (const i of targets) {
                i.proxy.rates = { ...f.rates };
                i.proxy.useCloud(cloud);
              }
              log.write({ type: 'net-start', fault: f.id, instances: targets.map((i) => i.name), rates: f.rates });
              note(
                `network errors on ${targets.map((i) => i.name).join(', ')}: throttle ${f.rates.throttle}, 5xx ${f.rates.error500}, lost replies ${f.rates.dropReply}; ` +
                  `cloud: ${f.cloud.unprocessedShare} of batch keys unprocessed, ${f.cloud.partitionWriteUnits} WCU/s on each of ${f.cloud.partitions} partitions, ` +
                  `index lag ${f.cloud.indexLagMs} ms, lost transactions in progress ${f.cloud.transactionInProgressMs} ms, ` +
                  `${f.cloud.slowShare} of requests held up to ${f.cloud.slowMs} ms`,
              );
            },
          },
          {
            atMs: f.atMs + f.durationMs,
            run: () => {
              for (const i of targets) {
                i.proxy.rates = {};
                i.proxy.useCloud(undefined);
              }
              log.write({ type: 'net-end', fault: f.id, instances: targets.map((i) => i.name) });
            },
          },
        ];
      }
      case 'outage': {
        let stopped: Promise<void> = Promise.resolve();
        return [
          {
            atMs: f.atMs,
            run: () => {
              log.write({ type: 'outage-start', fault: f.id });
              note(`store outage: stopping DynamoDB Local for ${(f.downMs / 1000).toFixed(1)} s`);
              stopped = db.stop();
              return stopped;
            },
          },
          {
            atMs: f.atMs + f.downMs,
            inline: true,
            run: async () => {
              await stopped;
              const restartAt = performance.now();
              await db.restart();
              const took = performance.now() - restartAt;
              log.write({ type: 'outage-end', fault: f.id });
              log.write({ type: 'store', restartMs: Math.round(took), dataBytes: db.dataBytes() });
              shiftMs += Math.max(0, took - storeRestartAllowanceMs);
              note(`store back (restart took ${(took / 1000).toFixed(1)} s${took > storeRestartAllowanceMs ? `; the rest of the schedule moves ${((took - storeRestartAllowanceMs) / 1000).toFixed(1)} s later` : ''})`);
            },
          },
        ];
      }
    }
  }
}

function pidAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleepMs(ms: number, abort?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (abort?.aborted) {
      reject(new HarnessAbortedError('interrupted'));
      return;
    }
    const timer = setTimeout(() => {
      abort?.removeEventListener('abort', onAbort);
      resolvePromise();
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new HarnessAbortedError('interrupted'));
    };
    abort?.addEventListener('abort', onAbort, { once: true });
  });
}

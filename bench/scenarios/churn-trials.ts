import type { BenchContext } from '../context.js';
import { KeeperFleet, saturationEvidence, settle, typicalNode, type Fleet } from '../fleet.js';
import { CpuWatch, loadSample, type LoadSample } from '../machine.js';
import { seconds, table } from '../report.js';
import { sleepMs } from '../run-ledger.js';
import { summarize } from '../stats.js';

/**
 * Repeated trials on one long-running cluster: each trial takes one typical node away (a
 * crash or a graceful leave) at a random phase of the system's heartbeat cycle, times how long
 * until every one of its tasks has started on another node, then starts a replacement node and
 * waits until the cluster is quiet again. A long-running cluster is what production has, and
 * it keeps a 20-trial series within minutes for a baseline whose takeover alone takes 10-20 s.
 */
export interface Trial {
  victim: string;
  tasks: number;
  /** From the kill (or the call to leave) until the last of its tasks started elsewhere; undefined if it never did. */
  ms?: number;
  /** Until the first of its tasks started elsewhere. */
  firstMs?: number;
  /** keeper only: until a peer declared the node dead. */
  detectionMs?: number;
  notMoved: number;
  /** How long the cluster took to become quiet again before this trial. */
  settleMs?: number;
  /** Health counters that moved between the kill (or leave) and the last task's start. */
  healthDuring: Record<string, number>;
}

export interface Series {
  label: string;
  system: 'keeper' | 'baseline';
  tasks: number;
  trials: Trial[];
  /** Set when the store could not keep up with this fleet: the evidence, and no trials. */
  saturated?: string[];
  setupMs?: number;
  health: Record<string, number>;
  overlaps: number;
  /** Average CPU over the series, % of one core: [DynamoDB Local, this process]. */
  cpu: number[];
  load: LoadSample;
  wallMs: number;
}

/** One fleet shape: a system, its node count and its task count. */
export function saturationKey(system: string, nodes: number, tasks: number): string {
  return `${system}/${nodes}/${tasks}`;
}

export interface ChurnOptions {
  label: string;
  action: 'kill' | 'stop';
  nodes: number;
  trials: number;
  /** No handler may start for this long before a cluster counts as quiet... */
  quietMs: number;
  /** ...or at most this long after every task runs again (replacements only). */
  quietCapMs: number;
  settleTimeoutMs: number;
  /** Watch the fleet this long after setup for saturation before any trial. */
  probeMs: number;
  /** Adds the tasks once the first nodes run (keeper; the baseline's locks need no items). */
  feed?: () => Promise<void>;
}

export async function churnTrials(ctx: BenchContext, fleet: Fleet, options: ChurnOptions): Promise<Series> {
  const load = loadSample(ctx.ownPids);
  const cpu = new CpuWatch([ctx.dbPid, process.pid]);
  const began = performance.now();
  const known = ctx.saturated.get(saturationKey(fleet.system, options.nodes, fleet.tasks.length));
  if (known) {
    ctx.log(`  ${options.label}: saturated at ${fleet.tasks.length} tasks earlier in this run; not started again`);
    return { label: options.label, system: fleet.system, tasks: fleet.tasks.length, trials: [], saturated: [`found earlier in this run: ${known.join('; ')}`], health: {}, overlaps: 0, cpu: [Number.NaN, Number.NaN], load, wallMs: 0 };
  }
  const prefix = fleet.system === 'keeper' ? 'k' : 'l';
  await fleet.start(Array.from({ length: options.nodes }, (_, i) => `${prefix}${i}`));
  await options.feed?.();
  const setupMs = await settle(fleet, options.quietMs, options.settleTimeoutMs);
  ctx.log(`  ${options.label}: ${options.nodes} nodes up${setupMs === undefined ? ' (not every task running within the time box)' : ` in ${(setupMs / 1000).toFixed(1)} s`}`);
  const evidence = setupMs === undefined ? [`only ${fleet.ledger.runningOnce(fleet.tasks)} of ${fleet.tasks.length} tasks running ${seconds(options.settleTimeoutMs)} after the start`] : [];
  evidence.push(...(await saturationEvidence(fleet, options.probeMs)));
  if (evidence.length > 0) {
    ctx.saturated.set(saturationKey(fleet.system, options.nodes, fleet.tasks.length), evidence);
    ctx.log(`  ${options.label}: saturated (${evidence.join('; ')}); no trials at ${fleet.tasks.length} tasks`);
    const series: Series = { label: options.label, system: fleet.system, tasks: fleet.tasks.length, trials: [], saturated: evidence, health: fleet.health(), overlaps: fleet.ledger.overlaps, cpu: cpu.read(), load, wallMs: performance.now() - began };
    await fleet.close();
    return series;
  }
  const trials: Trial[] = [];
  let settleMs: number | undefined = setupMs;
  for (let t = 0; t < options.trials; t++) {
    // A uniformly random phase within one heartbeat cycle (keeper: a period; baseline: a lease).
    await sleepMs(ctx.random() * fleet.cycleMs);
    const { id: victim } = typicalNode(fleet);
    const lost = fleet.tasksOf(victim);
    const healthBefore = fleet.health();
    let at: number;
    let leaving: Promise<number> | undefined;
    if (options.action === 'kill') {
      at = await fleet.kill(victim);
    } else {
      // Timed from the call: the tasks may start elsewhere before stop() has returned.
      at = performance.now();
      leaving = fleet.stop(victim);
    }
    const done = await fleet.ledger.movedAway(lost, victim, at, fleet.takeoverTimeoutMs);
    await leaving;
    const first = fleet.ledger.firstMoveAt(lost, victim, at);
    const trial: Trial = {
      victim,
      tasks: lost.length,
      ms: done === undefined ? undefined : done - at,
      firstMs: first === undefined ? undefined : first - at,
      notMoved: done === undefined ? fleet.ledger.notMoved(lost, victim, at).length : 0,
      settleMs,
      healthDuring: healthDelta(healthBefore, fleet.health()),
    };
    if (fleet instanceof KeeperFleet) {
      const declared = fleet.cluster.events.declarations.find((d) => d.node === victim && d.at >= at);
      if (declared) trial.detectionMs = declared.at - at;
    }
    trials.push(trial);
    ctx.log(`  ${options.label} trial ${t + 1}/${options.trials}: ${trial.tasks} tasks, ${trial.ms === undefined ? `not all moved within ${fleet.takeoverTimeoutMs} ms (${trial.notMoved} left)` : `${Math.round(trial.ms)} ms`}`);
    if (t + 1 < options.trials) {
      await fleet.start([`${prefix}r${t}`]);
      settleMs = await settle(fleet, options.quietMs, options.settleTimeoutMs, options.quietCapMs);
    }
  }
  const series: Series = {
    label: options.label,
    system: fleet.system,
    tasks: fleet.tasks.length,
    trials,
    ...(setupMs !== undefined ? { setupMs } : {}),
    health: fleet.health(),
    overlaps: fleet.ledger.overlaps,
    cpu: cpu.read(),
    load,
    wallMs: performance.now() - began,
  };
  await fleet.close();
  return series;
}

/** Health of each series: did the store keep up, did anything run twice, how busy was the machine. */
export function healthTable(all: readonly Series[]): string {
  return table(
    ['series', 'health counters (whole series, setup included)', 'trials with any of them during the measured interval', 'two runners at once', 'CPU: DynamoDB Local / bench (% of one core)', 'load at start (other DynamoDB Locals, test runners)', 'wall time'],
    all.map((s) => [
      `${s.label} (${s.tasks.toLocaleString('en-US')} tasks)`,
      Object.entries(s.health).map(([k, v]) => `${k} ${v}`).join(', '),
      s.saturated ? '-' : `${s.trials.filter((t) => Object.keys(t.healthDuring).length > 0).length} of ${s.trials.length}`,
      String(s.overlaps),
      s.cpu.every((c) => Number.isFinite(c)) ? `${s.cpu[0]}% / ${s.cpu[1]}%` : '-',
      `${s.load.loadavg1} (${s.load.foreign.dynamoDbLocals}, ${s.load.foreign.testRunners})`,
      seconds(s.wallMs),
    ]),
  );
}

export function healthDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

export const completed = (s: Series) => s.trials.flatMap((t) => (t.ms === undefined ? [] : [t.ms]));
export const censoredCount = (s: Series) => s.trials.filter((t) => t.ms === undefined).length;
export const victimTasks = (s: Series) => Math.round(summarize(s.trials.map((t) => t.tasks)).median);

/** The evidence for each saturated series, as report lines. */
export function saturationNotes(all: readonly Series[]): string {
  const saturated = all.filter((s) => s.saturated);
  if (saturated.length === 0) return '';
  return [
    '**Saturation.** DynamoDB Local on this machine could not keep up with these series, so they have no trials (a takeover measured on a store that drops heartbeats measures the store, not the protocol):',
    '',
    ...saturated.map((s) => `- ${s.label}, ${s.tasks.toLocaleString('en-US')} tasks: ${s.saturated!.join('; ')}.`),
    '',
  ].join('\n');
}

/** How a baseline figure is shown: its own, or "saturated at N; at M tasks: figure". */
export function baselineCell(primary: Series, fallback: Series | undefined, format: (s: Series) => string): string {
  if (!primary.saturated) return format(primary);
  const at = `saturated at ${primary.tasks.toLocaleString('en-US')}`;
  return fallback && !fallback.saturated ? `${at}; at ${fallback.tasks.toLocaleString('en-US')} tasks: ${format(fallback)}` : at;
}

/** The baseline series that has figures: the primary one, else its smaller fallback. */
export function measured(primary: Series, fallback: Series | undefined): Series | undefined {
  if (!primary.saturated) return primary;
  return fallback && !fallback.saturated ? fallback : undefined;
}

import type { BenchContext } from '../context.js';
import { KeeperFleet, settle, typicalNode, type Fleet } from '../fleet.js';
import { CpuWatch, loadSample, type LoadSample } from '../machine.js';
import { sleepMs } from '../run-ledger.js';

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
}

export interface Series {
  label: string;
  system: 'keeper' | 'baseline';
  trials: Trial[];
  setupMs?: number;
  health: Record<string, number>;
  overlaps: number;
  /** Average CPU over the series, % of one core: [DynamoDB Local, this process]. */
  cpu: number[];
  load: LoadSample;
  wallMs: number;
}

export interface ChurnOptions {
  label: string;
  action: 'kill' | 'stop';
  nodes: number;
  trials: number;
  /** No handler may start for this long before a cluster counts as quiet. */
  quietMs: number;
  settleTimeoutMs: number;
}

export async function churnTrials(ctx: BenchContext, fleet: Fleet, options: ChurnOptions): Promise<Series> {
  const load = loadSample(ctx.ownPids);
  const cpu = new CpuWatch([ctx.dbPid, process.pid]);
  const began = performance.now();
  const prefix = fleet.system === 'keeper' ? 'k' : 'l';
  await fleet.start(Array.from({ length: options.nodes }, (_, i) => `${prefix}${i}`));
  const setupMs = await settle(fleet, options.quietMs, options.settleTimeoutMs);
  ctx.log(`  ${options.label}: ${options.nodes} nodes up${setupMs === undefined ? ' (not quiet within the time box)' : ` in ${(setupMs / 1000).toFixed(1)} s`}`);
  const trials: Trial[] = [];
  let settleMs: number | undefined = setupMs;
  for (let t = 0; t < options.trials; t++) {
    // A uniformly random phase within one heartbeat cycle (keeper: a period; baseline: a lease).
    await sleepMs(ctx.random() * fleet.cycleMs);
    const { id: victim } = typicalNode(fleet);
    const lost = fleet.tasksOf(victim);
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
    };
    if (fleet instanceof KeeperFleet) {
      const declared = fleet.cluster.events.declarations.find((d) => d.node === victim && d.at >= at);
      if (declared) trial.detectionMs = declared.at - at;
    }
    trials.push(trial);
    ctx.log(`  ${options.label} trial ${t + 1}/${options.trials}: ${trial.tasks} tasks, ${trial.ms === undefined ? `not all moved within ${fleet.takeoverTimeoutMs} ms (${trial.notMoved} left)` : `${Math.round(trial.ms)} ms`}`);
    if (t + 1 < options.trials) {
      await fleet.start([`${prefix}r${t}`]);
      settleMs = await settle(fleet, options.quietMs, options.settleTimeoutMs);
    }
  }
  const series: Series = {
    label: options.label,
    system: fleet.system,
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

import { existsSync, readFileSync } from 'node:fs';
import type { InstanceBeingRead } from './faults.js';

/**
 * The workers' stderr (pino JSON lines): who declared whom dead, when each process fenced
 * itself and for how long, and the lines that should not be there.
 */
export interface Declaration {
  readonly at: number;
  readonly by: string;
  readonly peer: string;
  readonly instance: string;
  /** 'log': the declarer's own line; 'zombie': only the victim's refused heartbeat shows it. */
  readonly source: 'log' | 'zombie';
}

export interface WorkerLogs {
  readonly declarations: readonly Declaration[];
  /** "lease expired" lines. */
  readonly fenced: number;
  /** "this incarnation was declared dead" lines. */
  readonly zombies: number;
  readonly heartbeatFailures: number;
  /**
   * Leaves that ended with tasks whose handlers ignored their signal ("left with tasks whose
   * handlers ignore their signal"): the node stops beating right after that line without
   * marking itself gone, so failover of those tasks starts there, not at the SIGTERM.
   */
  readonly stuckLeaves: ReadonlyArray<{ readonly instance: string; readonly at: number; readonly tasks: readonly string[] }>;
  /** The first 20 error-level or unstructured lines. */
  readonly errorLines: readonly string[];
}

/** Reads every instance's stderr; fills in each instance's `fenced` and `leaseLost`. */
export function readWorkerLogs(instances: Iterable<InstanceBeingRead>, wallToRel: (wallMs: number) => number): WorkerLogs {
  const declarations: Declaration[] = [];
  let fenced = 0;
  let zombies = 0;
  let heartbeatFailures = 0;
  const errorLines: string[] = [];
  const stuckLeaves: Array<WorkerLogs['stuckLeaves'][number]> = [];
  const zombieLines: Array<{ at: number; by: string; peer: string; instance: string }> = [];
  for (const inst of instances) {
    if (!existsSync(inst.stderrPath)) continue;
    let fenceOpen: number | undefined;
    let leaseLostAt: number | undefined;
    for (const line of readFileSync(inst.stderrPath, 'utf8').split('\n')) {
      if (!line.startsWith('{')) {
        if (line.trim() !== '' && errorLines.length < 20) errorLines.push(`${inst.name}: ${line.slice(0, 200)}`);
        continue;
      }
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const msg = rec['msg'];
      const at = wallToRel(Date.parse(String(rec['time'])));
      if (msg === 'declared peer dead') {
        declarations.push({ at, by: String(rec['node']), peer: String(rec['peer']), instance: inst.name, source: 'log' });
      } else if (typeof msg === 'string' && msg.startsWith('lease expired')) {
        fenced += 1;
        if (fenceOpen === undefined) fenceOpen = at;
        if (leaseLostAt === undefined) leaseLostAt = at;
      } else if (msg === 'lease renewed; resuming tasks' || msg === 'joined the cluster') {
        if (fenceOpen !== undefined) inst.fenced.push({ a: fenceOpen, b: at });
        if (leaseLostAt !== undefined) inst.leaseLost.push({ a: leaseLostAt, b: at });
        fenceOpen = undefined;
        leaseLostAt = undefined;
      } else if (typeof msg === 'string' && msg.startsWith('this incarnation was declared dead')) {
        zombies += 1;
        // The declarer's own line is missing when its write's reply was lost; the victim's
        // refused heartbeat still shows it. (Without deadBy the item was not declared dead:
        // e.g. the node's own graceful leave had already marked it 'left'.)
        if (typeof rec['declaredBy'] === 'string') zombieLines.push({ at, by: rec['declaredBy'], peer: inst.node, instance: inst.name });
        if (fenceOpen === undefined) fenceOpen = at;
      } else if (msg === 'heartbeat failed') heartbeatFailures += 1;
      else if (typeof msg === 'string' && msg.startsWith('left with tasks whose handlers ignore their signal')) {
        stuckLeaves.push({ instance: inst.name, at, tasks: Array.isArray(rec['tasks']) ? rec['tasks'].map(String) : [] });
      }
      if (rec['level'] === 'error' && errorLines.length < 20) errorLines.push(`${inst.name}: ${line.slice(0, 300)}`);
    }
    if (fenceOpen !== undefined) inst.fenced.push({ a: fenceOpen, b: inst.end ?? Number.POSITIVE_INFINITY });
    if (leaseLostAt !== undefined) inst.leaseLost.push({ a: leaseLostAt, b: inst.end ?? Number.POSITIVE_INFINITY });
  }
  for (const z of zombieLines) {
    const logged = declarations.some((d) => d.peer === z.peer && d.by === z.by && d.at <= z.at + 1e9 && d.at >= z.at - 60e9);
    if (!logged) declarations.push({ ...z, source: 'zombie' });
  }
  return { declarations, fenced, zombies, heartbeatFailures, stuckLeaves, errorLines };
}

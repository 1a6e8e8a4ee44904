import { readFileSync, statSync } from 'node:fs';
import type { LoadSample, MachineInfo } from './machine.js';
import type { CrashData } from './scenarios/crash-takeover.js';
import type { CostData } from './scenarios/steady-cost.js';
import type { ScaleData } from './scenarios/scale.js';
import type { MemoryData } from './scenarios/worker-memory.js';

/**
 * A run as recorded in reports/bench.json: what `--render` needs to write the report again
 * from the measurements, without measuring again (a wording fix should not cost an hour).
 * Runs recorded before a scenario kept its constants in its data are completed here from
 * the data itself.
 */
export interface RecordedRun {
  machine: MachineInfo;
  code: string;
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  only: string[];
  seed: number;
  loads: Array<{ scenario: string; load: LoadSample }>;
  sections: Array<{ id: string; data: unknown }>;
}

export function readRecordedRun(path: string): RecordedRun {
  const run = JSON.parse(readFileSync(path, 'utf8')) as Partial<RecordedRun>;
  if (!run.machine || !run.sections || !run.startedAt) throw new Error(`${path} is not a bench.json written by npm run bench`);
  // Written after each scenario: the file's time is when the last one finished.
  run.finishedAt ??= statSync(path).mtime.toISOString();
  run.code ??= 'unknown';
  run.loads ??= [];
  run.sections = run.sections.map((s) => ({ id: s.id, data: complete(s.id, s.data as Record<string, unknown>) }));
  return run as RecordedRun;
}

function complete(id: string, data: Record<string, unknown>): unknown {
  switch (id) {
    case 'crash':
      return { nodes: 10, ...data } satisfies Partial<CrashData>;
    case 'cost': {
      const d = data as unknown as CostData;
      if (d.sizes) return d;
      const keeperP1 = d.rows.filter((r) => r.system === 'keeper' && r.periodMs === 1000);
      const windows = keeperP1[0]?.windows ?? [];
      return { ...d, nodes: d.rows[0]?.nodes ?? 10, sizes: keeperP1.map((r) => r.tasks).sort((a, b) => a - b), windowCount: windows.length, windowMs: Math.round(windows[0]?.seconds ?? 0) * 1000 };
    }
    case 'scale': {
      const d = data as unknown as ScaleData;
      if (d.windowMs) return d;
      const first = d.results[0]!;
      return { ...d, windowMs: Math.round(first.windows[0]?.seconds ?? 0) * 1000, windowCount: first.windows.length, kills: first.kills.length, periodMs: 1000 };
    }
    case 'memory': {
      const d = data as unknown as MemoryData;
      if (d.taskCount) return d;
      const label = d.results[0]?.label ?? '';
      return { ...d, taskCount: Number(/(\d+) tasks/.exec(label)?.[1] ?? 0), sampleMs: (d.results[0]?.samples.length ?? 0) * 1000 };
    }
    default:
      return data;
  }
}

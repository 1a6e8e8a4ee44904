import type { BenchTables } from './tables.js';

/** What every scenario gets from the run. */
export interface BenchContext {
  endpoint: string;
  /** Pid of the run's DynamoDB Local (java), for its CPU use. */
  dbPid: number;
  tables: BenchTables;
  quick: boolean;
  /** Seeded: kill phases and victims are reproducible from the seed in the report. */
  random: () => number;
  log(line: string): void;
  /** Processes this run started (not counted as foreign load). */
  ownPids: Set<number>;
  /**
   * Baseline sizes found saturated earlier in this run, with the evidence: a later scenario
   * does not start the same fleet again just to watch it fall over.
   */
  saturated: Map<string, string[]>;
}

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

/** One line of the headline table in the report and the README. */
export interface HeadlineRow {
  figure: string;
  keeper: string;
  baseline: string;
  /** Baseline over keeper, on medians. */
  ratio: string;
  target: string;
  verdict: string;
}

export interface SectionReport {
  id: string;
  title: string;
  body: string;
  charts: Chart[];
  headline: HeadlineRow[];
  /** Where keeper missed a target, in words and figures, for docs/bench-findings.md. */
  misses: string[];
  data: unknown;
}

/** mulberry32: small, seedable, good enough to place kills at random phases. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

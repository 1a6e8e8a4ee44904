import type { BenchContext, SectionReport } from '../context.js';

export async function workerMemory(ctx: BenchContext): Promise<SectionReport> {
  ctx.log('workerMemory: not written yet');
  return { id: 'workerMemory', title: 'workerMemory', body: 'not yet', charts: [], headline: [], misses: [], data: {} };
}

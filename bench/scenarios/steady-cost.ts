import type { BenchContext, SectionReport } from '../context.js';

export async function steadyCost(ctx: BenchContext): Promise<SectionReport> {
  ctx.log('steadyCost: not written yet');
  return { id: 'steadyCost', title: 'steadyCost', body: 'not yet', charts: [], headline: [], misses: [], data: {} };
}

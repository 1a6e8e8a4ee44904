import type { BenchContext, SectionReport } from '../context.js';

export async function scale(ctx: BenchContext): Promise<SectionReport> {
  ctx.log('scale: not written yet');
  return { id: 'scale', title: 'scale', body: 'not yet', charts: [], headline: [], misses: [], data: {} };
}

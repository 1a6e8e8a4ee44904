import type { BenchContext, SectionReport } from '../context.js';

export async function gracefulLeave(ctx: BenchContext): Promise<SectionReport> {
  ctx.log('gracefulLeave: not written yet');
  return { id: 'gracefulLeave', title: 'gracefulLeave', body: 'not yet', charts: [], headline: [], misses: [], data: {} };
}

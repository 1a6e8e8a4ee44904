import { createHash } from 'node:crypto';
import { hash53 } from '../lib/protocol/placement.js';
const sha = (s: string) => createHash('sha1').update(s).digest().readUIntBE(0, 6) * 32 + (0);
for (const [name, h, top] of [['cyrb53', hash53, 2 ** 53], ['sha1-48', (s: string) => createHash('sha1').update(s).digest().readUIntBE(0, 6), 2 ** 48]] as const) {
  for (const [n, k] of [[100000, 10], [100000, 3], [1000000, 64]] as const) {
    const bins = new Array(k).fill(0);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) bins[Math.floor((h(`task-${i}`) / top) * k)]++;
    const e = n / k;
    console.log(name, n, k, 'chi2', bins.reduce((s, b) => s + (b - e) ** 2 / e, 0).toFixed(1), 'dof', k - 1, ((performance.now() - t0) / n * 1000).toFixed(2), 'us');
  }
}

import { runSchedule } from './test/support/simulation.js';
const n = Number(process.argv[2] ?? 20);
const start = Number(process.argv[3] ?? 1);
const t0 = performance.now();
let bad = 0;
const tk: number[] = [];
for (let seed = start; seed < start + n; seed++) {
  const r = await runSchedule(seed);
  tk.push(...r.takeoversMs);
  if (r.violations.length) { bad++; console.log(seed, r.nodes, r.tasks, r.faults, r.violations.slice(0, 5)); }
}
tk.sort((a, b) => a - b);
console.log('schedules', n, 'bad', bad, 'ms/schedule', ((performance.now() - t0) / n).toFixed(1), 'takeover p50', tk[Math.floor(tk.length / 2)], 'max', tk[tk.length - 1]);

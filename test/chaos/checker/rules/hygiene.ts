// Hygiene: a worker must only end when the harness ends it (a violation otherwise); everything else that tells of a run not going as planned (bound, clocks, leaves, skipped faults, error lines, bad audit lines) is a finding, since it says nothing against the protocol by itself.
import type { Violation } from '../check-result.js';
import { withinDriftBound, type RunModel } from '../run-model.js';
import { fmt } from '../time-axis.js';

export interface Hygiene {
  unexpectedExits: Violation[];
  findings: string[];
}

export function checkHygiene(model: RunModel): Hygiene {
  const { run, settings: s, endNs } = model;
  const out: Hygiene = { unexpectedExits: [], findings: [] };
  if (Math.abs(model.formulaBoundMs - run.boundMs) > 1e-6) {
    out.findings.push(`the bound in the fault log (${run.boundMs} ms) differs from the documented formula d + (K+3)Pf = ${model.formulaBoundMs} ms`);
  }
  // The fault log in its own order, with what the harness had done to each process so far:
  // an exit is judged by the signals sent before it, not by any that came after.
  const sofar = new Map<string, { joined: number | undefined; term: number | undefined; killed: boolean }>();
  for (const r of model.records) {
    const t = model.rel(r.mono_ns);
    switch (r.type) {
      case 'spawn':
        sofar.set(r.instance, { joined: undefined, term: undefined, killed: false });
        if ((r.clockRate !== 1 || r.clockOffsetMs !== 0) && !withinDriftBound(s, r.clockRate)) out.findings.push(`${r.instance} ran with clock rate ${r.clockRate}, outside the drift bound ${s.driftBound}`);
        break;
      case 'joined': {
        const i = sofar.get(r.instance);
        if (i) i.joined = t;
        break;
      }
      case 'kill':
        sofar.get(r.instance)!.killed = true;
        break;
      case 'term':
        sofar.get(r.instance)!.term = t;
        break;
      case 'exit': {
        const i = sofar.get(r.instance)!;
        if (!r.expected) {
          out.unexpectedExits.push({ rule: 'unexpected exit', text: `${r.instance} (node ${r.node}) exited on its own at ${fmt(t)} (${r.signal ?? `code ${r.code}`}); stderr tail:\n${r.stderrTail ?? ''}` });
        } else if (i.term !== undefined && i.joined !== undefined && i.joined < i.term && !i.killed && r.code !== 0 && t <= endNs) {
          // (A SIGTERM before the process had joined ends it before its handler exists.)
          out.findings.push(`${r.instance} left on SIGTERM with ${r.signal ?? `exit code ${r.code}`}, not 0`);
        }
        break;
      }
      case 'skip':
        out.findings.push(`fault ${r.fault} (${r.kind} on ${r.slot}) skipped: ${r.reason}`);
        break;
      case 'finding':
        out.findings.push(r.text);
        break;
      default:
        break;
    }
  }
  const { errorLines } = model.workerLogs;
  if (errorLines.length > 0) out.findings.push(`error-level or unstructured lines in worker logs:\n${errorLines.join('\n')}`);
  for (const b of model.audit.backwards) out.findings.push(`${b.instance}: audit timestamps go backwards at ${fmt(b.at)}`);
  const { malformed, malformedExamples } = model.audit;
  if (malformed > 0) out.findings.push(`${malformed} malformed or orphaned audit lines, e.g. ${malformedExamples.join(' | ')}`);
  return out;
}

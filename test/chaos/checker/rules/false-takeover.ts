// False takeovers (liveness): a node may be declared dead only for a fault of its own (or when it says itself it could not renew its lease), since the protocol promises that a slow or cut-off store alone costs nobody its tasks.
import type { TimelineModel, Violation } from '../check-result.js';
import { withinDriftBound, type RunModel } from '../run-model.js';
import { fmt, ms } from '../time-axis.js';

export interface Declarations {
  falseTakeovers: Violation[];
  /** Declarations of a node that had fenced itself without an injected fault: a brown-out. */
  declaredWhileFenced: number;
  /** Fault to declaration, for the declarations a fault justifies. */
  detectionMs: number[];
  marks: TimelineModel['declarations'];
}

export function checkDeclarations(model: RunModel): Declarations {
  const { byNode, outages, run, settings: s } = model;
  const B = model.boundNs;

  /**
   * Whether node `peer` could rightly be declared dead at `t` (undefined: some time in the
   * run, for a 'dead' item found in the final table). It could if the incarnation current
   * at t had a fault of its own that kept it from heartbeating:
   *  - killed, or exited by itself, before t;
   *  - sent SIGTERM before t (a leave that could not finish leaves a live-looking item);
   *  - paused or partitioned at some time in [t - duration, t], or the fault ended less than
   *    one failover bound before t (its next heartbeat may lose the race with a declaration
   *    that was already under way);
   *  A stall is not on this list: a SIGSTOP short enough that the node's next heartbeat lands
   *  before anyone may declare it (what a handler that blocks the event loop does) must cost
   *  it nothing but its lease for a while.
   *  - running with a clock outside the drift bound (the harness does not do this, but a
   *    slower clock than promised is a legitimate reason).
   * A store outage alone excuses nothing. While the store is down no write lands, so no
   *  declaration can happen during it; and no counter advances in the table, so the outage
   *  is no evidence against anyone (the observer's own outage is not evidence). When the
   *  store is back, every node that still runs resumes heartbeating within one of its own
   *  periods, long before anyone can accumulate K benchmark ticks against it. So after an
   *  outage only a node that was also paused, partitioned, killed or gone may be declared
   *  dead; a node cut off by the outage alone must not be.
   * Which incarnation: a declaration is of the instance with that node id that joined last
   * before t; one second of slack covers the delay between a join and its log line.
   */
  const justify = (peer: string, t: number | undefined): string | undefined => {
    const list = byNode.get(peer) ?? [];
    for (const [index, i] of list.entries()) {
      if (t !== undefined) {
        const next = list[index + 1];
        if (i.spawn > t) continue;
        if (next?.joined !== undefined && next.joined + 1e9 < t) continue;
      }
      const after = (x: number | undefined) => x !== undefined && (t === undefined || t >= x);
      if (after(i.kill)) return `${i.name} was killed at ${fmt(i.kill!)}`;
      if (after(i.exitUnexpected)) return `${i.name} exited at ${fmt(i.exitUnexpected!)}`;
      if (i.term !== undefined && after(i.exitAt)) return `${i.name} had left (exited at ${fmt(i.exitAt!)})`;
      for (const p of i.pauses) if (t === undefined || (t >= p.a && t <= p.b + B)) return `${i.name} was paused from ${fmt(p.a)}`;
      for (const p of i.partitions) if (t === undefined || (t >= p.a && t <= p.b + B)) return `${i.name} was partitioned from ${fmt(p.a)}`;
      if (!withinDriftBound(s, i.rate)) return `${i.name} ran with clock rate ${i.rate}, outside the drift bound`;
    }
    return undefined;
  };

  /** A stall of the node within one bound before t: its effects (a fence) are over by then. */
  const stalledBefore = (peer: string, t: number): string => {
    const stall = (byNode.get(peer) ?? []).flatMap((i) => i.stalls.map((x) => ({ i, x }))).find(({ x }) => x.a <= t && x.b >= t - B);
    return stall ? ` (${stall.i.name} stalled from ${fmt(stall.x.a)} for ${ms(stall.x.b - stall.x.a).toFixed(0)} ms, which must not get it declared)` : '';
  };
  /**
   * A declaration without a fault of the node's own is still not a false takeover if the
   * node itself says it could not renew its lease at the time (it had fenced itself: the
   * store was too slow for it, or its process was starved), provided no store outage ended in
   * the last (K-1)P/f + Pf before: a node cut off only by an outage must come back unharmed.
   * These are counted apart, so a brown-out on this machine shows up as such. Nor after a
   * stall of the node within a bound: a stall long enough to fence it is still too short to
   * get it declared, and the fence it caused excuses nothing.
   */
  const selfFenced = (peer: string, t: number): string | undefined => {
    const lookBack = (run.earliestDeclarationMs + s.periodMs * s.driftBound) * 1e6;
    if (outages.some((o) => o.a <= t && o.b >= t - lookBack)) return undefined;
    if (stalledBefore(peer, t)) return undefined;
    for (const i of byNode.get(peer) ?? []) {
      const f = i.leaseLost.find((x) => x.a <= t && t <= x.b);
      if (f) return `${i.name} had fenced itself at ${fmt(f.a)} (could not renew its lease)`;
    }
    return undefined;
  };

  const out: Declarations = { falseTakeovers: [], declaredWhileFenced: 0, detectionMs: [], marks: [] };
  const slotOf = (node: string, t: number) => {
    const list = byNode.get(node) ?? [];
    return [...list].reverse().find((i) => i.spawn <= t)?.slot ?? list[0]?.slot;
  };
  for (const d of model.declarations) {
    const why = justify(d.peer, d.at);
    const fencedWhy = why ? undefined : selfFenced(d.peer, d.at);
    if (fencedWhy) out.declaredWhileFenced += 1;
    out.marks.push({ slot: slotOf(d.peer, d.at), atMs: ms(d.at), peer: d.peer, by: d.by, justified: why !== undefined || fencedWhy !== undefined });
    if (!why && !fencedWhy) {
      const inOutage = outages.find((o) => d.at >= o.a && d.at <= o.b + B);
      out.falseTakeovers.push({
        rule: 'false takeover',
        text: `${d.by} (${d.source === 'log' ? d.instance : `seen in ${d.instance}'s log`}) declared ${d.peer} dead at ${fmt(d.at)}, but no instance of ${d.peer} was killed, paused, partitioned, gone or outside the drift bound then${inOutage ? ` (a store outage ran from ${fmt(inOutage.a)} to ${fmt(inOutage.b)})` : ''}${stalledBefore(d.peer, d.at)}`,
      });
      continue;
    }
    if (!why) continue;
    // Detection latency: from the start of the fault that justified it.
    const list = byNode.get(d.peer) ?? [];
    const starts = list.flatMap((i) => [i.kill, i.exitUnexpected, i.term, ...i.pauses.map((p) => p.a), ...i.partitions.map((p) => p.a)]).filter((x): x is number => x !== undefined && x <= d.at);
    if (starts.length > 0) out.detectionMs.push(ms(d.at - Math.max(...starts)));
  }

  // A node left 'dead' in the final table needs a fault of its own at some time in the run.
  for (const n of model.table?.nodes ?? []) {
    if (n['state'] !== 'dead') continue;
    const why = justify(String(n['id']), undefined);
    if (!why) out.falseTakeovers.push({ rule: 'false takeover', text: `node ${String(n['id'])} is 'dead' in the final table (declared by ${String(n['deadBy'])}), but no instance of it was ever killed, paused, partitioned or gone` });
  }
  return out;
}

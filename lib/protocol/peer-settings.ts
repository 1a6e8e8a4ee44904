import type { ProtocolSettings } from '../store/store.js';

/**
 * What a node's peers judge it and its counter by, as it publishes them in its item: its
 * period and stale threshold (its patience), its drift bound, its request timeout (how long
 * its heartbeat may be in flight) and its fence window and handler stop time (how long after
 * its last heartbeat it may still run a task).
 */
export interface PeerSettings {
  periodMs: number;
  staleTicks: number;
  driftBound: number;
  requestTimeoutMs: number;
  fenceMs: number;
  handlerStopMs: number;
}

/**
 * How many ticks of a witness's counter an observer needs past its sighting of a suspect's
 * counter value before it may declare the suspect dead, when the three may run different
 * settings (a rolling change of them): the suspect is judged by its own fence window, each
 * witness's ticks by its own period. The smallest n such that
 *   (n - 1) * P_witness / f - (d_observer + d_witness) * f  >  F_suspect * f + c_suspect
 * (n - 1 full periods of the witness's clock after a read window, against the moment the
 * suspect has stopped its tasks, with f the widest drift bound of the three), and never
 * fewer than the suspect's own patience, K periods of its own, counted in the witness's
 * periods. With one set of settings this is K exactly: config.ts's safety condition
 * (resolveConfig) is this one with n = K (docs/protocol.md, "Why it is safe", "Mixed settings").
 */
export function ticksToDeclare(observer: PeerSettings, witness: PeerSettings, suspect: PeerSettings): number {
  const f = Math.max(observer.driftBound, witness.driftBound, suspect.driftBound);
  // The same expressions as config.ts's earliestDeclarationMs and latestSelfStopMs, so that equal
  // settings give K to the last bit.
  const stopped = suspect.fenceMs * f + suspect.handlerStopMs;
  const safe = (n: number) => ((n - 1) * witness.periodMs) / f - (observer.requestTimeoutMs + witness.requestTimeoutMs) * f > stopped;
  // 1e-9: K * P / P may land a hair above K in floating point.
  let n = Math.max(2, Math.ceil((suspect.staleTicks * suspect.periodMs) / witness.periodMs - 1e-9));
  for (let more = 0; !safe(n); n++) if (++more > 100_000) return Number.POSITIVE_INFINITY;
  return n;
}

/**
 * How many of the observer's ticks a witness's counter may stand still and still count as a
 * witness: a witness on the slowest clock ticks once per f^2 * P_witness / P_observer
 * periods of the fastest observer.
 */
export function witnessStallTicks(observer: PeerSettings, witness: PeerSettings): number {
  const f = Math.max(observer.driftBound, witness.driftBound);
  return Math.ceil((f ** 2 * witness.periodMs) / observer.periodMs - 1e-9) + 1;
}

/**
 * A peer's settings as its item publishes them. Items of a keeper from before nodes published
 * their request timeout lack it: such a node judges every peer by its own settings, which is
 * why nobody may join next to it with different ones (join.ts), so ours stand in for what it
 * did not say.
 */
export function publishedSettings(published: ProtocolSettings | undefined, own: PeerSettings): PeerSettings {
  if (!published) return own;
  return { ...published, requestTimeoutMs: published.requestTimeoutMs ?? own.requestTimeoutMs };
}

import { publishedSettings, ticksToDeclare, witnessStallTicks, type PeerSettings } from './peer-settings.js';
import type { NodeItem, NodesRead, WatchRecord } from '../store/store.js';

/**
 * Failure detection by the cluster's own counters (the patent's benchmark), never by another
 * machine's clock.
 *
 * For every watched peer p the detector remembers the moment it first saw p's current counter
 * value: its own counter then (`since`) and the counters of the other nodes it reads
 * (`snapshot`). Each witness's progress since then is evidence of how long p has stood still;
 * p's staleness (the benchmark) is the strongest evidence once the single strongest is
 * discounted, when there are three witnesses or more. p is stale once that reaches K ticks.
 *
 * Nodes may run different settings for a while (a rolling change of them): each node
 * publishes its own, and a witness's ticks are then weighed against the number of them it
 * needs before p may be declared (config.ts, ticksToDeclare: p judged by its own fence window
 * and patience, the witness's ticks by its own period). Evidence is expressed in p's ticks,
 * ticks * K_p / needed, so with one set of settings it is the plain tick count.
 *
 * Why this is safe: the value was first seen after p sent the heartbeat that wrote it, and a
 * witness needs K-1 full periods of its own clock for K increments after a sighting. With every
 * clock within the drift bound that is at least (K-1) * P / f of real time, which the config
 * check keeps longer than p's own self-fencing window. Discounting the strongest evidence means
 * one witness whose clock runs outside the bound cannot alone get p declared dead. (A median
 * would do that too, but would also let a witness that merely started watching late, such as
 * a freshly started observer itself, drown out witnesses that have watched p for long.)
 * Clock *offsets* never enter.
 *
 * - Witnesses that stopped advancing (dead themselves, or cut off) are left out, so several
 *   neighbours dying together do not shield each other; the observer's own counter always
 *   counts. Leaving witnesses out only changes which in-bound clock decides.
 * - An observer's own outage produces no evidence: evidence is counter progress in the table,
 *   and nobody's counter moves while the table is unreachable.
 * - A fresh observer need not wait a full window: each node publishes its sightings (its
 *   WatchRecords) with every heartbeat, and a sighting by witness q of p's *current* value is
 *   as good as the detector's own, measured on q's counter.
 */
export interface Suspect {
  id: string;
  inc: number;
  counter: number;
  staleness: number;
}

interface Sighting {
  inc: number;
  counter: number;
  /** The observer's own counter when it first saw this value. */
  since: number;
  /** Counters of the other nodes read at that moment. */
  snapshot: Map<string, number>;
  /** The settings p published in the item this value was read from. */
  settings: PeerSettings;
}

interface Progress {
  counter: number;
  /** The observer's own counter when this node's counter was last seen to change. */
  changedAt: number;
}

/** The benchmark from the witnesses' evidence: the largest, or the second largest once there are three or more. */
export function benchmark(evidence: number[]): number | undefined {
  if (evidence.length === 0) return undefined;
  const sorted = [...evidence].sort((a, b) => b - a);
  return evidence.length >= 3 ? sorted[1] : sorted[0];
}

export class Detector {
  private readonly sightings = new Map<string, Sighting>();
  private readonly progress = new Map<string, Progress>();
  private readonly seeded = new Map<string, WatchRecord>();
  private selfCounter = 0;
  private latest = new Map<string, NodeItem>();

  /**
   * @param selfId this node's id
   * @param own this node's settings, which also stand for a peer's that publishes none
   */
  constructor(
    private readonly selfId: string,
    private readonly own: PeerSettings,
  ) {}

  private settingsOf(node: NodeItem | undefined): PeerSettings {
    return publishedSettings(node?.settings, this.own);
  }

  /** Restores this node's published sightings after a restart or rejoin (counters continue). */
  seed(records: Record<string, WatchRecord>): void {
    for (const [id, record] of Object.entries(records)) this.seeded.set(id, record);
  }

  /**
   * Takes one read of the table: this node's counter, taken after the read returned, and the
   * items of the nodes it read (its watched peers and witnesses).
   */
  observe(selfCounter: number, read: Pick<NodesRead, 'nodes' | 'unread' | 'rounds'>, watched: readonly string[]): void {
    const { nodes, unread, rounds } = read;
    this.selfCounter = selfCounter;
    this.latest = nodes;
    for (const [id, node] of nodes) {
      if (id === this.selfId) continue;
      const seen = this.progress.get(id);
      if (!seen || seen.counter !== node.counter) this.progress.set(id, { counter: node.counter, changedAt: selfCounter });
    }
    const watchedSet = new Set(watched);
    for (const id of [...this.sightings.keys()]) if (!watchedSet.has(id)) this.sightings.delete(id);
    for (const id of watched) {
      // Not read this time (left unprocessed by the store): not observed, so nothing changes.
      if (unread.has(id)) continue;
      const node = nodes.get(id);
      if (!node || node.state !== 'alive') {
        // Gone, unreadable or no longer alive: start over. A sighting must never outlive the
        // item it was taken from, or a re-created item that reaches the same counter value
        // would inherit its age.
        this.sightings.delete(id);
        continue;
      }
      const current = this.sightings.get(id);
      if (current && current.inc === node.inc && current.counter === node.counter) continue;
      const seeded = this.seeded.get(id);
      const since = seeded && seeded.inc === node.inc && seeded.counter === node.counter ? Math.min(seeded.since, selfCounter) : selfCounter;
      // Only witnesses read by the same request as p's value, or a later one: a witness counter
      // read by an earlier request may predate p's last heartbeat, and its progress from then
      // would count against p (docs/protocol.md, "Why it is safe").
      const round = rounds.get(id) ?? 1;
      const snapshot = new Map<string, number>();
      for (const [other, item] of nodes) {
        if (other !== id && other !== this.selfId && (rounds.get(other) ?? 1) >= round) snapshot.set(other, item.counter);
      }
      this.sightings.set(id, { inc: node.inc, counter: node.counter, since, snapshot, settings: this.settingsOf(node) });
    }
    this.seeded.clear();
  }

  /** How many benchmark ticks p's current counter value has stood still, as far as this node can tell. */
  staleness(id: string): number {
    const sighting = this.sightings.get(id);
    if (!sighting) return 0;
    const suspect = sighting.settings;
    // A witness's ticks, in the suspect's: exact integers when all settings agree.
    const inSuspectTicks = (ticks: number, witness: PeerSettings) => (ticks * suspect.staleTicks) / ticksToDeclare(this.own, witness, suspect);
    const deltas: number[] = [];
    const own = this.selfCounter - sighting.since;
    if (own > 0) deltas.push(inSuspectTicks(own, this.own));
    for (const [witness, node] of this.latest) {
      if (witness === id || witness === this.selfId || node.state !== 'alive') continue;
      const moved = this.progress.get(witness);
      const settings = this.settingsOf(node);
      if (!moved || this.selfCounter - moved.changedAt > witnessStallTicks(this.own, settings)) continue;
      const bases: number[] = [];
      const snap = sighting.snapshot.get(witness);
      if (snap !== undefined) bases.push(snap);
      const record = node.watch[id];
      if (record && record.inc === sighting.inc && record.counter === sighting.counter) bases.push(record.since);
      if (bases.length === 0) continue;
      const delta = node.counter - Math.min(...bases);
      if (delta > 0) deltas.push(inSuspectTicks(delta, settings));
    }
    return benchmark(deltas) ?? 0;
  }

  /**
   * Whether a node's counter moved within its last period or so (one of our ticks, or as
   * many as one of its periods spans): safe to hand tasks to.
   */
  advancing(id: string): boolean {
    const moved = this.progress.get(id);
    const ticks = Math.max(1, Math.ceil(this.settingsOf(this.latest.get(id)).periodMs / this.own.periodMs - 1e-9));
    return moved !== undefined && this.selfCounter - moved.changedAt <= ticks;
  }

  /** Watched peers whose staleness reached their own K, with the exact value to declare dead on. */
  suspects(): Suspect[] {
    const out: Suspect[] = [];
    for (const [id, s] of this.sightings) {
      const staleness = this.staleness(id);
      if (staleness >= s.settings.staleTicks) out.push({ id, inc: s.inc, counter: s.counter, staleness });
    }
    return out;
  }

  /** This node's sightings, published with its heartbeat for fresh observers. */
  records(): Record<string, WatchRecord> {
    const out: Record<string, WatchRecord> = {};
    for (const [id, s] of this.sightings) out[id] = { inc: s.inc, counter: s.counter, since: s.since };
    return out;
  }

  forget(id: string): void {
    this.sightings.delete(id);
    this.progress.delete(id);
  }
}

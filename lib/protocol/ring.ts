/**
 * The ring: every node and every task has a place on it, from a hash of its id. Who watches
 * whom (each node its k successors) and which stretch of free tasks each node claims first
 * follow from those places alone, so every node computes the same answers from the same
 * membership without talking to the others. The store's key design (the members index's
 * sort key, a task's slot) is built from these places too.
 */

/** 53-bit string hash (cyrb53): fast, well spread, stable across processes. */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * A node's position on the ring: its id's hash as fixed-width hex, then the id. Stored on the
 * node item as the sort key of the `members` index, so that a node finds its neighbours with
 * one small query instead of reading the whole membership. Hash order keeps neighbours
 * uncorrelated with naming (one host's workers are not all adjacent).
 */
export function ringKey(id: string): string {
  return `${hash53(id).toString(16).padStart(14, '0')}#${id}`;
}

/** Position of a ring key as a number in [0, 2^53), for estimating the cluster's size. */
export function ringPosition(key: string): number {
  return Number.parseInt(key.slice(0, 14), 16);
}

export const ringSize = 2 ** 53;

/** Ids in ring order. */
export function ringOrder(ids: Iterable<string>): string[] {
  return [...new Set(ids)].map((id) => ({ id, key: ringKey(id) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => e.id);
}

/**
 * The k successors of `self` on the ring of live ids: the peers it reads every period. Each
 * node is watched by its k predecessors, so a node goes undetected only if all k of them die
 * with it; their own watchers then find them, the ring re-forms, and the survivor next in
 * line finds it.
 */
export function watchedPeers(self: string, liveIds: Iterable<string>, k: number): string[] {
  const ring = ringOrder([...liveIds, self]);
  const at = ring.indexOf(self);
  const count = Math.min(k, ring.length - 1);
  const out: string[] = [];
  for (let i = 1; i <= count; i++) out.push(ring[(at + i) % ring.length]!);
  return out;
}

/** A stretch of the ring whose free tasks one node claims first: slots from `from` (inclusive) to `to` (exclusive). */
export interface ClaimArc {
  owner: string;
  from: string;
  to: string;
}

function ringPoint(position: number): string {
  return position.toString(16).padStart(14, '0');
}

/** A node's ring position as an arc boundary (its ring key without the id). */
function ringPointOf(id: string): string {
  return ringKey(id).slice(0, 14);
}

/**
 * Who claims which free task first: each node takes the free tasks of its own arc of the
 * ring, so where the nodes' views agree every task has one claimant and the nodes' reads of
 * the pool do not overlap. Returns the arcs of `self` and then of its successors, in ring
 * order, as far as this node can place them.
 *
 * - `wholeRing`: `successors` are every other live node. The ring is then cut into n equal
 *   arcs in ring order, so a small cluster shares a backlog evenly.
 * - Otherwise (a large cluster, where each node knows only a neighbourhood): a node's arc runs
 *   from its own ring position to its first successor's. These arcs are uneven (the largest
 *   is about ln n times the mean), which is why the pool (lib/node/pool.ts) deals an arc's tasks out over the
 *   arc owner's neighbourhood there instead of claiming them all itself.
 */
export function claimArcs(self: string, successors: readonly string[], wholeRing: boolean): ClaimArc[] {
  if (successors.length === 0) {
    const at = ringPointOf(self);
    return [{ owner: self, from: at, to: at }];
  }
  if (wholeRing) {
    const ring = ringOrder([self, ...successors]);
    const n = ring.length;
    const start = ring.indexOf(self);
    return ring.map((_, i) => {
      const at = (start + i) % n;
      return { owner: ring[at]!, from: ringPoint(Math.floor((at * ringSize) / n)), to: ringPoint(Math.floor(((at + 1) * ringSize) / n)) };
    });
  }
  const ids = [self, ...successors];
  return ids.slice(0, -1).map((owner, i) => ({ owner, from: ringPointOf(owner), to: ringPointOf(ids[i + 1]!) }));
}

/** Whether a slot lies in [from, to) on the ring (wrapping past the end when to <= from). */
export function inArc(slot: string, arc: { from: string; to: string }): boolean {
  return arc.from < arc.to ? slot >= arc.from && slot < arc.to : slot >= arc.from || slot < arc.to;
}

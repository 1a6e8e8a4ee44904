import { ringKey, ringPosition, ringSize } from './protocol/placement.js';
import type { MemberEntry, Store } from './store/store.js';

/**
 * A node's view of the cluster is its neighbourhood on the ring, never the whole membership:
 * a join, leave or death costs the nodes around it a query of a few index entries, not a
 * read of every member by every node (which is what makes membership O(n^2) at scale).
 */
export interface Neighbourhood {
  /** Live successors in ring order, this node excluded, at most as many as asked for. */
  successors: MemberEntry[];
  /** Dead or departed members between this node and its first live successor: this node sweeps them. */
  gap: MemberEntry[];
  /** Live nodes in the cluster: exact when the walk went all the way round, else estimated from ring density. */
  size: number;
  /** The walk went all the way round: `successors` are every other live node. */
  complete: boolean;
}

/** Walks the ring forward from `selfId` until `want` live successors are found or the ring is closed. */
export async function readNeighbourhood(store: Store, selfId: string, want: number): Promise<Neighbourhood> {
  const me = ringKey(selfId);
  const page = Math.max(2 * want, 8);
  const successors: MemberEntry[] = [];
  const gap: MemberEntry[] = [];
  const seen = new Set<string>([selfId]);
  let after = me;
  let wrapped = false;
  let closed = false;
  walk: for (let pages = 0; pages < 1000; pages++) {
    const batch = await store.ringSuccessors(after, page);
    for (const member of batch) {
      if ((wrapped && member.ring >= me) || seen.has(member.id)) {
        closed = true;
        break walk;
      }
      seen.add(member.id);
      if (member.state === 'alive') {
        successors.push(member);
        if (successors.length >= want) break walk;
      } else if (successors.length === 0) {
        gap.push(member);
      }
    }
    if (batch.length < page) {
      if (wrapped) {
        closed = true;
        break;
      }
      wrapped = true;
      after = '';
    } else {
      after = batch[batch.length - 1]!.ring;
    }
  }
  return { successors, gap, size: closed ? successors.length + 1 : estimateSize(me, successors), complete: closed };
}

/** The live predecessors that watch `selfId`, nearest first: the nodes to tell when it joins or leaves. */
export async function livePredecessors(store: Store, selfId: string, k: number): Promise<MemberEntry[]> {
  const me = ringKey(selfId);
  const page = Math.max(2 * k, 8);
  const out: MemberEntry[] = [];
  const seen = new Set<string>([selfId]);
  let before = me;
  let wrapped = false;
  for (let pages = 0; pages < 1000 && out.length < k; pages++) {
    const batch = await store.ringPredecessors(before, page);
    for (const member of batch) {
      if ((wrapped && member.ring <= me) || seen.has(member.id)) return out;
      seen.add(member.id);
      if (member.state === 'alive') out.push(member);
      if (out.length >= k) return out;
    }
    if (batch.length < page) {
      if (wrapped) return out;
      wrapped = true;
      before = '\uffff';
    } else {
      before = batch[batch.length - 1]!.ring;
    }
  }
  return out;
}

/** n live successors spread over a stretch d of the ring suggest n * ringSize / d nodes in all. */
function estimateSize(me: string, successors: MemberEntry[]): number {
  const last = successors[successors.length - 1];
  if (!last) return 1;
  const distance = (ringPosition(last.ring) - ringPosition(me) + ringSize) % ringSize || 1;
  return Math.max(successors.length + 1, Math.round((successors.length * ringSize) / distance));
}

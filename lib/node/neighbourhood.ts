import { followUpPasses } from '../config.js';
import { errorText } from '../log.js';
import { ringKey, ringPosition, ringSize } from '../protocol/ring.js';
import type { MemberEntry, Store } from '../store/store.js';
import type { NodeContext } from './context.js';

/** Live successors a node knows (and hands tasks to): its watched peers and a few more. */
const spreadPeers = 8;
/**
 * Up to this many nodes, a node reads the whole ring when its neighbourhood changes (one
 * small index query), so that the cluster can split free tasks into equal arcs (claimArcs).
 */
const wholeRingMax = 32;

/** What the neighbourhood reports to the rest of the node. */
export interface NeighbourhoodHooks {
  /** A dead or departed member appeared between this node and its first live successor: this node sweeps it. */
  tombstoneSeen(tomb: MemberEntry): void;
}

/**
 * This node's place on the ring: the live successors it watches and hands tasks to, the
 * tombstones it sweeps, the cluster's size, and the predecessors it tells when the ring
 * changes here. Owns the view and when to read it again.
 */
export class Neighbourhood {
  /** Live ring successors, nearest first. */
  private successorIds: string[] = [];
  /** Every other live node in ring order, when the cluster is small enough to know it whole. */
  private wholeRingIds: string[] | undefined;
  /** Dead or departed members up to the first live successor. */
  private gapEntries: MemberEntry[] = [];
  private clusterSize = 1;
  private watchedIds: string[] = [];
  private dirty = true;
  /** The passes at which to read once more after a change (the members index may lag behind it). */
  private refreshAgainAt: number[] = [];
  /** The newest neighbour-change counter seen in this node's item, and the one acted on. */
  private latestChange: number | undefined;
  private processedChange: number | undefined;
  /** Predecessors read as extra witnesses for a few passes after joining (see announce). */
  private warmupPeers: string[] = [];
  private warmupUntil = -1;
  /** Spreads the thinned cluster-item reads of a big cluster evenly over nodes. */
  private readonly phaseOffset: number;

  constructor(
    private readonly node: NodeContext,
    private readonly hooks: NeighbourhoodHooks,
    random: () => number,
  ) {
    this.phaseOffset = Math.floor(random() * 1_000_000);
  }

  /** The watched peers: the first `watchPeers` live successors. */
  get watched(): readonly string[] {
    return this.watchedIds;
  }

  get successors(): readonly string[] {
    return this.successorIds;
  }

  get wholeRing(): readonly string[] | undefined {
    return this.wholeRingIds;
  }

  get gap(): readonly MemberEntry[] {
    return this.gapEntries;
  }

  /** A neighbour told this node that the ring changed near it (its item's `neighbours` counter). */
  changeSeen(counter: number): void {
    this.latestChange = counter;
  }

  /** Something this node saw (a watched peer gone, a declaration, a join) changed the ring: read it again. */
  markChanged(): void {
    this.dirty = true;
  }

  /** Whether this pass must read the ring: it changed, the pass is periodic, or a second look is due. */
  refreshDue(): boolean {
    const passes = this.node.passes();
    if (this.latestChange !== undefined && this.latestChange !== this.processedChange) {
      this.processedChange = this.latestChange;
      this.dirty = true;
      // And again 2 and 6 passes later: the members index may not show the newcomer yet, and
      // it is not watched until it does (the same looks as after a declaration).
      this.refreshAgainAt = followUpPasses.map((after) => passes + after);
    }
    return this.dirty || this.node.periodic() || this.refreshAgainAt.some((at) => passes >= at);
  }

  async refresh(): Promise<void> {
    const { node } = this;
    const known = Math.max(node.config.watchPeers, spreadPeers);
    // Walk the whole ring only where it is small: a large cluster keeps O(k) membership reads.
    const view = await readNeighbourhood(node.store, node.id, this.clusterSize <= wholeRingMax ? Math.max(known, wholeRingMax) : known);
    this.dirty = false;
    this.refreshAgainAt = this.refreshAgainAt.filter((at) => at > node.passes());
    this.successorIds = view.successors.slice(0, known).map((m) => m.id);
    this.wholeRingIds = view.complete ? view.successors.map((m) => m.id) : undefined;
    for (const tomb of view.gap) {
      if (!this.gapEntries.some((t) => t.id === tomb.id && t.state === tomb.state)) this.hooks.tombstoneSeen(tomb);
    }
    this.gapEntries = view.gap;
    this.clusterSize = view.size;
    this.watchedIds = this.successorIds.slice(0, node.config.watchPeers);
  }

  /** Extra nodes to read with the watched peers: the predecessors' view, while warming up after a join. */
  witnesses(): string[] {
    return this.node.passes() <= this.warmupUntil ? this.warmupPeers.filter((id) => !this.watchedIds.includes(id)) : [];
  }

  /**
   * Every node reads the cluster item's change counter, so in a big cluster those reads are
   * thinned to about a thousand per second in all (one item can serve 3,000 read units per
   * second); unowned tasks are then found within size/1000 periods.
   */
  readsClusterNow(): boolean {
    const every = Math.max(1, Math.round(this.clusterSize / 1000));
    return every === 1 || (this.node.passes() + this.phaseOffset) % every === 0;
  }

  /** Tells the live predecessors (the nodes that watch this one) that the ring changed here. */
  async announce(): Promise<void> {
    const { node } = this;
    try {
      const predecessors = await livePredecessors(node.store, node.id, node.config.watchPeers);
      // They watch the peers this node now watches, and publish what they have seen: read
      // them too for K periods, so this node need not watch a dead peer for a full window.
      this.warmupPeers = predecessors.map((m) => m.id);
      this.warmupUntil = node.passes() + node.config.staleTicks + 1;
      await Promise.all(predecessors.map((m) => node.store.notifyNeighbours(m.id).catch(() => {})));
    } catch (error) {
      // Their periodic refresh will find us anyway.
      node.log.warn('could not tell ring neighbours about a change', { node: node.id, error: errorText(error) });
    }
  }
}

/**
 * A node's view of the cluster is its neighbourhood on the ring, never the whole membership:
 * a join, leave or death costs the nodes around it a query of a few index entries, not a
 * read of every member by every node (which is what makes membership O(n^2) at scale).
 */
export interface RingView {
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
export async function readNeighbourhood(store: Store, selfId: string, want: number): Promise<RingView> {
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

import { settledWithin } from '../clock.js';
import { moveConcurrency } from '../config.js';
import { byPriority, canRun, newestVersion, preference, rebalanceChoice, rebalanceCount, rendezvous } from '../protocol/placement.js';
import { claimArcs, inArc } from '../protocol/ring.js';
import { taskSlot } from '../store/items.js';
import { nodeLoad, taskWeight, type ClusterItem, type NodeItem, type TaskHead } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Holdings } from './holdings.js';
import type { Monitor } from './monitor.js';
import { forEachLimit, type Moves } from './moves.js';
import type { Mover } from './mover.js';
import type { Neighbourhood } from './neighbourhood.js';

/**
 * Passes a task stays on a node before rebalancing may move it on: two nodes acting on each
 * other's task counts of a period ago would otherwise hand the same task back and forth.
 */
export const rebalanceHoldPasses = 10;

/**
 * Passes a node holds off rebalancing after it last saw a watched peer drain tasks away: the
 * drain places them on the least loaded nodes itself, and the loads this node knows of its
 * other peers trail those placements by up to a period, so balancing meanwhile would move
 * tasks a second time.
 */
const drainQuietPasses = 3;

/** Free tasks a node reads per period beyond its own arc, looking for tasks left unclaimed. */
const strayPage = 16;
/** A node busy placing tasks of its own arc looks for strays every this many claim rounds. */
const strayEvery = 4;

/**
 * The tasks, in the order given, that fit `room` by weight: each one that still fits what
 * the ones before it left (with tasks of weight 1, the first `room`). A heavy task that does
 * not fit leaves room for lighter ones after it.
 */
function fitting<T extends { weight?: number }>(tasks: readonly T[], room: number): T[] {
  const out: T[] = [];
  for (const task of tasks) {
    if (room <= 0) break;
    if (taskWeight(task) > room) continue;
    out.push(task);
    room -= taskWeight(task);
  }
  return out;
}

function weightOf(tasks: ReadonlyArray<{ weight?: number }>): number {
  return tasks.reduce((sum, task) => sum + taskWeight(task), 0);
}

/** What the pool asks of the rest of the node. */
export interface PoolHooks {
  leaseValid(): boolean;
  /** A claim may have landed unseen: reconcile at the next `passes` passes. */
  lookAgain(passes: number): void;
}

/**
 * Free tasks and the balance of load: claims unowned tasks (this node's arc of the ring, then
 * strays anyone may take), and hands a few tasks per pass to a lighter watched successor.
 * Owns what it knows of the pool: the cluster's task counter as last seen, whether a backlog
 * is left, the free tasks seen outside its arcs and where the next look for strays starts.
 */
export class Pool {
  /** The cluster's task counter as last read: a change means tasks were added or freed. */
  private seenTasks = -1;
  private freeBacklog = false;
  /** Free tasks outside this node's arcs, with the pass each was first seen free (see claimUnowned). */
  private readonly freeSeen = new Map<string, number>();
  /** Where the next look for stray free tasks starts: the ring goes round in pages. */
  private strayCursor: string | undefined;
  /** The last look for strays found some: look again next round. */
  private straysSeen = false;
  private roundsSinceStrays = 0;
  /** Draining watched peers with the task count last seen, and the last pass one was seen handing tasks out. */
  private readonly drainers = new Map<string, number>();
  private drainSeenAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly node: NodeContext,
    private readonly neighbourhood: Neighbourhood,
    private readonly monitor: Monitor,
    private readonly holdings: Holdings,
    private readonly moves: Moves,
    private readonly mover: Mover,
    private readonly hooks: PoolHooks,
  ) {}

  /** Whether this pass should claim: the task counter moved, a backlog is left, or the pass is periodic. */
  claimDue(cluster: ClusterItem | undefined): boolean {
    const tasksChanged = cluster !== undefined && cluster.tasks !== this.seenTasks;
    if (cluster) this.seenTasks = cluster.tasks;
    return tasksChanged || this.freeBacklog || this.node.periodic();
  }

  /**
   * Claims free tasks, reading only a bounded part of the pool however large the cluster:
   *
   * 1. This node's own arc of the ring (claimArcs), and the arcs of the watched successors
   *    right after it that cannot take tasks now (full, or not running every type this node
   *    runs). Where views agree, every free task has exactly one such claimant,
   *    and the claimants' reads do not overlap.
   * 2. With room to spare, one page of the rest of the pool, a little further round the ring
   *    each time. A task seen there that is still free two periods after this node first
   *    saw it was left by its claimant (full, unable to run its type, or with a different
   *    view of the ring), and anyone may take it.
   *
   * Returns how many free tasks this round placed (on this node or its successors).
   *
   * When it read more than it has room for, higher priorities go first: priority orders the
   * free tasks a round reads (up to four times the room this node has, in ring order), not
   * the whole pool, which no node reads at once.
   */
  async claimUnowned(): Promise<number> {
    // Room, by weight: a task heavier than what is left stays for a node with room for it.
    let spare = this.holdings.spare();
    this.freeBacklog = false;
    if (spare <= 0 || this.holdings.types().length === 0) return 0;
    // Until this round has read what it needs: if a read fails, look again next period
    // rather than wait for the next change of the cluster counter.
    this.freeBacklog = true;
    const arcs = claimArcs(this.node.id, this.neighbourhood.wholeRing ?? this.neighbourhood.successors, this.neighbourhood.wholeRing !== undefined);
    let reach = 1;
    while (reach < arcs.length && reach <= this.node.config.watchPeers && !this.canClaimAll(arcs[reach]!.owner)) reach++;
    const mineRange = { from: arcs[0]!.from, to: arcs[reach - 1]!.to };
    const limit = Math.min(spare * 4, 1000);
    const inRange = await this.node.store.unownedTasks(limit, mineRange);
    const mine = inRange.filter((task) => {
      if (!this.holdings.canRun(task)) return false;
      const slot = taskSlot(task.id);
      const arc = arcs.slice(0, reach).find((a) => inArc(slot, a));
      // A successor that runs this type and has room claims its own arc's tasks.
      return arc === undefined || arc.owner === this.node.id || !this.canClaim(arc.owner, task);
    });
    let placed: number;
    if (this.neighbourhood.wholeRing) {
      // More than it has room for: the higher priorities first (placeTasks does the same below).
      // A task that prefers labels this node lacks is placed as a large cluster places its
      // arc (below), so that a node with them gets it while one has room.
      const elsewhere = mine.filter((task) => preference(this.node.config.labels, task.prefer) < Object.keys(task.prefer ?? {}).length);
      const claimed = await this.claim(fitting(byPriority(elsewhere.length > 0 ? mine.filter((task) => !elsewhere.includes(task)) : mine), spare));
      placed = claimed.length;
      spare -= weightOf(claimed);
      if (elsewhere.length > 0 && spare > 0) {
        const before = this.holdings.load;
        placed += await this.mover.distribute(elsewhere, { reason: 'claim', unplaced: 'leave', selfSingly: true });
        spare -= this.holdings.load - before;
      }
    } else {
      // Arcs are uneven in a large cluster (the largest about ln n times the mean), so the
      // node deals its arc's tasks out over itself and its successors, least loaded first, as
      // a takeover does: a backlog spreads evenly at once instead of landing on the nodes
      // with the largest arcs and being moved again by rebalancing.
      const before = this.holdings.load;
      // Claims are not urgent: this node's own share goes one write unit per task, not two.
      placed = await this.mover.distribute(mine, { reason: 'claim', unplaced: 'leave', selfSingly: true });
      spare -= this.holdings.load - before;
    }
    // More to read in our range, tasks left or refused (another node's view of the ring
    // differed, or nobody had room).
    let backlog = inRange.length >= limit || placed < mine.length;

    // Strays: whenever this round found nothing of its own to place, and while the last look
    // found some; a node busy with its own arc (tasks being added) looks every few rounds.
    if (spare > 0 && (this.straysSeen || placed === 0 || ++this.roundsSinceStrays >= strayEvery)) {
      this.roundsSinceStrays = 0;
      this.straysSeen = false;
      const from = this.strayCursor ?? mineRange.to;
      const page = await this.node.store.unownedTasks(strayPage, { from, to: from });
      this.strayCursor = page.length > 0 ? taskSlot(page[page.length - 1]!.id) : undefined;
      const stray: TaskHead[] = [];
      for (const task of page) {
        if (!this.holdings.canRun(task) || inArc(taskSlot(task.id), mineRange)) continue;
        const firstSeen = this.freeSeen.get(task.id) ?? this.node.passes();
        this.freeSeen.set(task.id, firstSeen);
        if (this.node.passes() - firstSeen >= 2) stray.push(task);
        this.straysSeen = true;
        backlog = true;
      }
      placed += (await this.claim(fitting(byPriority(stray), spare))).length;
    } else if (spare > 0) {
      // Not looked at this round: the next one will (it finds nothing of its own, or is due).
      backlog = true;
    }
    // Forget sightings old enough that the task has surely been claimed or finished since.
    for (const [id, seen] of this.freeSeen) if (this.node.passes() - seen > 2 * this.node.config.resyncTicks) this.freeSeen.delete(id);
    this.freeBacklog = backlog;
    return placed;
  }

  /** Moves free tasks to this node, adopting each that lands; returns those that did. */
  private async claim(tasks: readonly TaskHead[]): Promise<TaskHead[]> {
    const claimed: TaskHead[] = [];
    await forEachLimit(tasks, moveConcurrency, async (task) => {
      const after = await this.moves.move(task, { owner: this.node.id, ownerInc: this.node.inc() }).catch(() => {
        // The claim may have landed unseen: look at our own tasks next period rather than
        // leave it owned and unrun until the periodic reconcile.
        this.hooks.lookAgain(1);
        return undefined;
      });
      if (after) {
        claimed.push(task);
        this.freeSeen.delete(task.id);
        this.holdings.adopt(after);
      }
    });
    return claimed;
  }

  /**
   * Whether a successor, as last read, would claim a free task of this type itself. Unread
   * (not watched, or not read yet) counts as yes; so does one that may have died, until it is
   * declared dead: its tasks wait for that anyway, and the strays rule covers the rest. A
   * draining or leaving one claims nothing: its arc is read by the nearest predecessor that does.
   */
  private canClaim(id: string, task: Pick<TaskHead, 'type' | 'weight' | 'require'>): boolean {
    const peer = this.monitor.peer(id);
    return peer === undefined || (peer.state === 'alive' && !peer.draining && !peer.leaving && nodeLoad(peer) + taskWeight(task) <= peer.capacity && canRun(peer, task));
  }

  /**
   * Whether a watched peer drained tasks away within the last few passes (its count went down
   * while it drains). A drainer whose count stands still (tasks nobody else can run) holds
   * nothing up.
   */
  private drainUnderWay(): boolean {
    const watched = this.neighbourhood.watched;
    for (const id of this.drainers.keys()) if (!watched.includes(id)) this.drainers.delete(id);
    for (const id of watched) {
      const peer = this.monitor.peer(id);
      if (!peer?.draining) {
        this.drainers.delete(id);
        continue;
      }
      const last = this.drainers.get(id);
      if (peer.taskCount > 0 ? last === undefined || peer.taskCount < last : last !== undefined && last > 0) this.drainSeenAt = this.node.passes();
      this.drainers.set(id, peer.taskCount);
    }
    return this.node.passes() - this.drainSeenAt < drainQuietPasses;
  }

  /** Whether this node and its live watched peers, as last read, run more than one application version (newestVersion). */
  private deployUnderWay(): boolean {
    const peers = this.neighbourhood.watched.map((id) => this.monitor.peer(id)).filter((p): p is NodeItem => p?.state === 'alive');
    return newestVersion([{ version: this.node.config.appVersion, joinedAt: this.node.joinedAt() }, ...peers]) !== undefined;
  }

  /** Whether a watched successor would claim every type this node runs (so its arc is not ours to read). */
  private canClaimAll(id: string): boolean {
    return this.holdings.types().every((type) => this.canClaim(id, { type }));
  }

  /**
   * Diffusion along the ring: hand a few tasks to a watched successor that carries fewer.
   * Uses only what this node reads anyway, so balancing costs no extra reads.
   *
   * Not while a deploy is under way here (two application versions among this node and its
   * watched peers): each node of the older version moves its tasks once, when it leaves,
   * straight to the least loaded new nodes. Balancing before that would chase a join with
   * moves the leaves make anyway: an old node's task pushed to a new one, a new node's pushed
   * to a newer joiner the next leave fills, or a task pushed to an old node, moved twice.
   */
  async rebalance(): Promise<void> {
    if (!this.hooks.leaseValid()) return;
    if (this.drainUnderWay()) return;
    if (this.deployUnderWay()) return;
    let budget = this.node.config.maxMovesPerTick;
    for (const [index, id] of this.neighbourhood.watched.entries()) {
      if (budget <= 0) return;
      const peer = this.monitor.peer(id);
      // Only to a peer seen advancing just now: a task handed to a node that has just died
      // would wait for the tombstone sweep. Never to a draining or leaving one: it would hand
      // the task on again.
      if (!peer || peer.state !== 'alive' || peer.draining || peer.leaving || !this.monitor.advancing(id)) continue;
      const gain = (task: { prefer?: Record<string, string> }) => preference(peer.labels, task.prefer) - preference(this.node.config.labels, task.prefer);
      // Loads, gaps and room are weights (with tasks of weight 1, task counts).
      const mine = this.holdings.load;
      const theirs = nodeLoad(peer);
      const weight = rebalanceCount(mine, theirs, peer.capacity - theirs, this.node.config.watchPeers, Number.POSITIVE_INFINITY, index === 0);
      // A task that prefers the peer's labels over this node's goes there whenever the peer
      // has room for it, gap or no gap: placement may have had no such node to offer at the
      // time (none had joined yet, or room). It never comes back: that would lose preference.
      const drawn = this.holdings.held().some((o) => gain(o.task) > 0);
      if (weight === 0 && !drawn) continue;
      // Never a task straight back to the node it came from; and tasks that hash towards
      // the peer first, so the same tasks would move again if anything.
      const candidates = this.holdings.held()
        .filter((o) => this.node.passes() - o.since >= rebalanceHoldPasses && !this.holdings.isOutgoing(o.task.id))
        .map((o) => o.task)
        .filter((t) => canRun(peer, t) && t.previousOwner !== id && gain(t) >= 0)
        // Tasks that prefer the peer's labels over this node's first (none moves to a node it
        // prefers less), then those that hash towards the peer.
        .sort((a, b) => gain(b) - gain(a) || Number(rendezvous(b.id, [this.node.id, id]) === id) - Number(rendezvous(a.id, [this.node.id, id]) === id));
      const movable = weight === 0 ? [] : rebalanceChoice(candidates, weight, budget, mine - theirs, peer.capacity - theirs, index === 0);
      if (drawn) {
        let room = peer.capacity - theirs - weightOf(movable);
        for (const task of candidates) {
          if (movable.length >= budget) break;
          if (gain(task) <= 0 || movable.includes(task) || taskWeight(task) > room) continue;
          movable.push(task);
          room -= taskWeight(task);
        }
      }
      if (movable.length === 0) continue;
      budget -= movable.length;
      // Each run stops before its task moves, and the pass waits for that at most
      // handlerStopMs: a handler that ignores its signal holds up its own task, never the
      // pass (and with it this node's watch over its peers). Such a task stays here, stopped
      // for a move, and runs here again once its handler returns (Drain.handOff keeps it).
      await settledWithin(this.node.clock, movable.map((task) => this.holdings.stopForMove(task.id, 'rebalanced')), this.node.config.handlerStopMs);
      const stopped = new Set(this.holdings.stoppedForMove().map((task) => task.id));
      const moved: string[] = [];
      const warnings = this.mover.forewarnings();
      await forEachLimit(movable.filter((task) => stopped.has(task.id)), moveConcurrency, async (task) => {
        await this.holdings.drop(task.id, 'rebalanced');
        const after = await this.moves.move(task, { owner: id, ownerInc: peer.inc }, { beforeWrite: () => warnings.before(id) }).catch(() => undefined);
        if (after) moved.push(task.id);
        else await this.holdings.takeBack(task.id);
      });
      if (moved.length > 0) {
        await this.mover.tell(id, moved, warnings);
        this.node.emit('rebalanced', { to: id, tasks: moved.length });
      }
    }
  }
}

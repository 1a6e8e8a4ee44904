import { batchMoveLanes, moveConcurrency } from '../config.js';
import type { Doorbell } from '../doorbell.js';
import { errorText } from '../log.js';
import { isOutdated, newestVersion, placeTasks, type Candidate } from '../protocol/placement.js';
import { AmbiguousWriteError, nodeLoad, type Notified, type TaskHead } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Holdings } from './holdings.js';
import { forEachLimit, movedTo, transactionChunks, type Moves } from './moves.js';
import type { Neighbourhood } from './neighbourhood.js';

/** What handing tasks out asks of the rest of the node. */
export interface MoverHooks {
  /** Tasks moved to this node may have landed unseen: reconcile at the next `passes` passes. */
  lookAgain(passes: number): void;
  /** Whether this node drains: then it is no candidate for anything it hands out. */
  draining(): boolean;
}

/** How one distribute() call places its tasks. */
export interface Distribution {
  /** The node the tasks come from: never a candidate. */
  exclude?: string;
  /** For the log: takeover, leave, sweep, claim. */
  reason: string;
  /** Tasks nobody can take: back to the pool (default), or left where they are (free tasks). */
  unplaced?: 'pool' | 'leave';
  /** This node's own share one task at a time (one write unit each) instead of in transactions. */
  selfSingly?: boolean;
}

/** A receiver's inbox as bumped before tasks moved to it, and whether a ring has stood for it yet. */
interface Warning {
  at: number;
  reply: Promise<Notified | undefined | null>;
  rung: boolean;
}

/**
 * Receivers warned before tasks move to them, for one round of moves. A mover can die
 * between a move and the tell that follows it (chaos finding 14); the receiver is alive, so
 * no takeover concerns the task, and it would find the task only at its periodic
 * reconcile. Warned first, it sees its inbox move at its next heartbeat and reconciles at
 * that pass and the next, a period apart, which finds every move that landed within about a
 * period of the warning: so a warning older than half a period is renewed before the next
 * move. The tell after the moves still bumps the inbox too: a receiver that saw the warning
 * before the moves landed has reconciled too early, and one whose index lags needs the
 * later bump's reconciles (the simulator's cloud found that with the warning alone). Its
 * ring stands for the warned values as well, so a ring that arrives saves every reconcile.
 */
export class Forewarnings {
  private readonly warnings = new Map<string, Warning>();

  constructor(private readonly node: NodeContext) {}

  /**
   * As a move to `to` is sent: a warning no older than half a period (none for this node or
   * the pool). Sent along with the move, not awaited before it: the receiver reconciles
   * whenever it sees the bump, so the order of the two does not matter, and a leave's tasks
   * would otherwise wait one more round trip.
   */
  before(to: string | null): void {
    if (to === null || to === this.node.id) return;
    const now = this.node.clock.now();
    const warning = this.warnings.get(to);
    if (warning && now - warning.at <= this.node.config.periodMs / 2) return;
    this.warnings.set(to, { at: now, reply: this.node.store.notify(to).catch(() => null), rung: false });
  }

  /** The warned inbox values for `to` that no ring has stood for yet, now rung. */
  async unrung(to: string): Promise<Notified[]> {
    const warning = this.warnings.get(to);
    if (!warning || warning.rung) return [];
    warning.rung = true;
    const reply = await warning.reply;
    return reply ? [reply] : [];
  }
}

/**
 * The sending side of a handover: takes a dead node's tasks over, hands this node's tasks
 * out when it leaves, deals tasks out over the live neighbourhood, and tells each receiver
 * what it got (inbox bumped before the moves, then a doorbell ring). Holds no state between
 * calls.
 */
export class Mover {
  constructor(
    private readonly node: NodeContext,
    private readonly neighbourhood: Neighbourhood,
    private readonly holdings: Holdings,
    private readonly moves: Moves,
    private readonly doorbell: Doorbell | undefined,
    private readonly hooks: MoverHooks,
  ) {}

  async takeOver(deadId: string, followUp = false): Promise<void> {
    const startedAt = this.node.clock.now();
    const tasks = await this.orphansOf(deadId);
    if (followUp && tasks.length === 0) return;
    const moved = await this.distribute(tasks, { exclude: deadId, reason: 'takeover' });
    const ms = this.node.clock.now() - startedAt;
    this.node.emit('takeover', { node: deadId, tasks: tasks.length, moved, ms });
    this.node.log.info('took over tasks of dead node', { node: this.node.id, dead: deadId, tasks: tasks.length, moved, ms: Math.round(ms) });
  }

  /**
   * Tasks held under a node id by an incarnation that is gone. The id may already have
   * rejoined as a new incarnation: that one's tasks are its own and are never taken.
   *
   * The tasks are read before the node item, never after: a node item read first can be
   * overtaken by a rejoin while this process stalls (GC pause, SIGSTOP), and the "dead" item
   * would then condemn the new incarnation's tasks (chaos finding 9). Read second, the item
   * is at least as new as every listed owner: if it is alive, only its own incarnation's
   * tasks are live; if it is not, no listed task belongs to a live incarnation.
   */
  async orphansOf(nodeId: string): Promise<TaskHead[]> {
    const listed = await this.node.store.tasksOwnedBy(nodeId);
    if (listed.length === 0) return [];
    const item = await this.node.store.getNode(nodeId);
    const liveInc = item?.state === 'alive' ? item.inc : undefined;
    return listed.filter((t) => t.ownerInc !== liveInc);
  }

  /**
   * Live candidates for new tasks: this node with its exact load, and (balanced) every other
   * live node; `exclude` is the node the tasks come from, never a candidate, and neither is a
   * draining node nor one that is leaving (it would hand the task on again). A node of an
   * older application version than the newest among these (newestVersion) is marked
   * outdated: placement gives it a task only if no up-to-date node can take it.
   */
  async candidates(exclude?: string): Promise<Candidate[]> {
    const { node } = this;
    const mine = { version: node.config.appVersion, joinedAt: node.joinedAt() };
    const self: Candidate = {
      id: node.id,
      inc: node.inc(),
      load: this.holdings.load,
      capacity: node.config.capacity,
      types: this.holdings.types(),
      ...(node.config.labels ? { labels: node.config.labels } : {}),
    };
    const out: Candidate[] = exclude === node.id || node.phase() !== 'running' || this.hooks.draining() ? [] : [self];
    if (node.config.takeover === 'detector' && out.length > 0) return out;
    const others = this.neighbourhood.successors.filter((id) => id !== exclude);
    if (others.length === 0) return out;
    const { nodes } = await node.store.readNodes(others, { cluster: false });
    const live = [...nodes.values()].filter((n) => n.state === 'alive' && n.id !== exclude);
    const newest = newestVersion([mine, ...live]);
    if (isOutdated(mine, newest)) self.outdated = true;
    for (const peer of live) {
      if (peer.draining || peer.leaving) continue;
      out.push({
        id: peer.id,
        inc: peer.inc,
        load: nodeLoad(peer),
        capacity: peer.capacity,
        types: peer.types,
        ...(peer.labels ? { labels: peer.labels } : {}),
        ...(isOutdated(peer, newest) ? { outdated: true } : {}),
      });
    }
    return out;
  }

  /**
   * Moves tasks from their current (dead, departing or orphaned) owner to live nodes, in
   * parallel; tasks no node can take go back to the pool. Returns how many moved.
   *
   * Two or more tasks for one peer go as one transaction (up to 25 tasks): one request
   * instead of one per task, which is what a large takeover or a leave waits on, on the store
   * and on the mover's CPU (DynamoDB bills it as two writes per task; moves are rare). Each
   * receiver is told as soon as a batch of its tasks has landed, so it can start them while
   * the rest still move. A refused or ambiguous transaction is redone task by task: each
   * single move either lands or finds that the transaction did (same owner, token one up),
   * and once a task's token has moved, the transaction can no longer land. Tasks for this
   * node go the same way (one by one for claims, at half the write units), then one
   * consistent batch read returns the items to run.
   */
  async distribute(tasks: TaskHead[], how: Distribution): Promise<number> {
    if (tasks.length === 0) return 0;
    const candidates = await this.candidates(how.exclude);
    const { assigned, unplaced } = placeTasks(tasks, candidates);
    const incOf = new Map(candidates.map((c) => [c.id, c.inc]));
    /** `landedUnseen`: the task was in a transaction whose outcome is unknown, which may have moved it already. */
    type Job = { task: TaskHead; to: string | null; inc: number; landedUnseen?: boolean };
    // Free tasks nobody can take stay where they are; anyone else's go back to the pool.
    const toPool = how.unplaced === 'leave' ? [] : unplaced;
    const singles: Job[] = toPool.map((task) => ({ task, to: null, inc: 0 }));
    const batches: Array<{ to: string; inc: number; tasks: TaskHead[] }> = [];
    for (const [target, list] of assigned) {
      const inc = target === this.node.id ? this.node.inc() : (incOf.get(target) ?? 0);
      const chunks = target === this.node.id && how.selfSingly ? list.map((task) => [task]) : transactionChunks(list);
      for (const chunk of chunks) {
        if (chunk.length === 1) singles.push({ task: chunk[0]!, to: target, inc });
        else batches.push({ to: target, inc, tasks: chunk });
      }
    }
    // Landed moves each receiver has not been told of yet: a batch tells its receiver at once,
    // the rest are told at the end, each receiver once.
    const untold = new Map<string, string[]>();
    const landedFor = (to: string, ids: string[]) => untold.set(to, [...(untold.get(to) ?? []), ...ids]);
    const warnings = this.forewarnings();
    const tell = async (to: string) => {
      const ids = untold.get(to) ?? [];
      untold.delete(to);
      if (!(await this.tell(to, ids, warnings))) landedFor(to, ids);
    };
    let moved = 0;
    const moveOne = async ({ task, to, inc, landedUnseen }: Job) => {
      try {
        let unsure = false;
        let after = await this.moves.move(task, { owner: to, ownerInc: inc }, { unsure: () => (unsure = true), beforeWrite: () => warnings.before(to) });
        // Its outcome unknown: the receiver is told, and looks until it lands or is refused.
        if (!after && unsure && to !== null && to !== this.node.id) landedFor(to, [task.id]);
        // Refused because the transaction did land: the receiver still has to be told. (After
        // an unknown outcome, move() has read the task already.)
        if (!after && landedUnseen && !unsure) {
          const now = await this.node.store.getTask(task.id);
          if (movedTo(now, task, { owner: to, ownerInc: inc })) after = now;
        }
        if (!after) return;
        moved += 1;
        if (to === this.node.id) this.holdings.adopt(after);
        else if (to !== null) landedFor(to, [task.id]);
      } catch (error) {
        // Ambiguous or unavailable: the tombstone sweep (or the target's reconcile) finds it later.
        this.node.log.warn(`${how.reason}: could not move task`, { node: this.node.id, task: task.id, error: errorText(error) });
      }
    };
    const redo: Job[] = [];
    const early: Array<Promise<void>> = [];
    await Promise.all([
      forEachLimit(batches, batchMoveLanes, async ({ to, inc, tasks: chunk }) => {
        let failure: unknown;
        await this.moves.pace(chunk, true);
        warnings.before(to);
        let landed = await this.node.store.moveTasks(chunk.map((task) => ({ id: task.id, from: task })), { owner: to, ownerInc: inc }).catch((error: unknown) => {
          failure = error;
          return false;
        });
        const landedUnseen = failure instanceof AmbiguousWriteError;
        if (landedUnseen) {
          // A transaction lands whole or not at all, and one that timed out on a busy store has
          // often landed by then: one consistent read of its tasks says so, where redoing them
          // costs a refused write and a read per task. If it has not landed (yet), the single
          // moves below race it, and each task's token lets exactly one of them win.
          const now = await this.node.store.getTasks(chunk.map((task) => task.id)).catch(() => undefined);
          landed = now !== undefined && chunk.every((task) => movedTo(now.get(task.id), task, { owner: to, ownerInc: inc }));
        }
        if (landed) {
          moved += chunk.length;
          if (to === this.node.id) {
            early.push(this.adoptLanded(chunk.map((task) => task.id)));
          } else {
            landedFor(to, chunk.map((task) => task.id));
            early.push(tell(to));
          }
        } else {
          this.node.log.warn(`${how.reason}: batch move failed; moving its tasks one by one`, { node: this.node.id, to, tasks: chunk.length, error: failure === undefined ? 'refused' : errorText(failure) });
          // Told even if every redo fails: a transaction that landed unseen must not wait for
          // the periodic reconcile (this node itself looks at its next two passes).
          if (landedUnseen && to === this.node.id) this.hooks.lookAgain(2);
          else if (landedUnseen) landedFor(to, chunk.map((task) => task.id));
          redo.push(...chunk.map((task) => ({ task, to, inc, landedUnseen })));
        }
      }),
      forEachLimit(singles, moveConcurrency, moveOne),
    ]);
    await forEachLimit(redo, moveConcurrency, moveOne);
    await Promise.all(early);
    await Promise.all([...untold.keys()].map(tell));
    if (toPool.length > 0) await this.node.store.bumpCluster('tasks').catch(() => {});
    return moved;
  }

  /**
   * Starts the tasks a transaction moved to this node: a transaction returns no items, so one
   * consistent batch read fetches them (instead of one single write per task, each returning
   * its item). If the read fails, the next reconcile finds them.
   */
  private async adoptLanded(ids: string[]): Promise<void> {
    const now = await this.node.store.getTasks(ids).catch(() => undefined);
    if (!now) {
      this.hooks.lookAgain(1);
      return;
    }
    for (const id of ids) {
      const task = now.get(id);
      if (task) this.holdings.adopt(task);
    }
  }

  /** Warnings for one round of moves: call `before` ahead of each move, pass them to `tell`. */
  forewarnings(): Forewarnings {
    return new Forewarnings(this.node);
  }

  /**
   * Tells a node that tasks were handed to it. A warned inbox value no ring stood for yet
   * (`warnings`) is rung at once with the tasks, so that the receiver starts them now; then
   * its inbox is bumped in the table (what it is sure to see, with its next heartbeat) and its
   * doorbell rung with that value and the tasks too, so that neither value costs it a
   * reconcile. False if the table could not be told.
   */
  async tell(to: string, tasks: string[], warnings?: Forewarnings): Promise<boolean> {
    const ring = ({ bell, inbox }: Notified) => {
      if (bell && this.doorbell) this.doorbell.ring(bell, { node: to, inbox, tasks });
    };
    for (const warned of (await warnings?.unrung(to)) ?? []) ring(warned);
    const reply = await this.node.store.notify(to).catch(() => null);
    if (reply === null) return false;
    if (reply) ring(reply);
    return true;
  }

  /**
   * Graceful leave, one batch at a time: hands these tasks (their runs stopped) straight to
   * live peers (no detection wait); on the `last` batch, marks this incarnation as gone,
   * unless some task's handler is still running (`holdBack`): that one is left to failover,
   * which waits for this node's lease to run out. Returns how many tasks were handed over.
   */
  async leave(tasks: TaskHead[], holdBack: ReadonlySet<string>, last: boolean): Promise<number> {
    const { node } = this;
    let handedOver = 0;
    try {
      handedOver = await this.distribute(tasks, { exclude: node.id, reason: 'leave' });
      if (!last) return handedOver;
      // Moves that timed out were settled back to us under a new token (or their outcome
      // is still unknown); try those again before leaving, rather than leave them to the
      // sweep. So with tasks that landed here after the runs were stopped and were never
      // started (a peer that read this node before its leaving flag, a ring that came
      // during the leave): one index query, and they move now, not at the sweep.
      for (let round = 1; round <= 2; round++) {
        for (const id of this.moves.pendingIds()) await this.moves.settle(id);
        const left = (await node.store.tasksOwnedBy(node.id)).filter((t) => t.ownerInc === node.inc() && !holdBack.has(t.id) && !this.moves.pending(t.id));
        if (left.length === 0) break;
        handedOver += await this.distribute(left, { exclude: node.id, reason: 'leave' });
      }
      if (holdBack.size === 0 && (await node.store.markLeft(node.id, node.inc()))) await this.neighbourhood.announce();
    } catch (error) {
      node.log.warn('graceful leave incomplete; peers will take over what is left', { error: errorText(error) });
    }
    return handedOver;
  }
}

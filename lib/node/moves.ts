import { sleep, type Clock } from '../clock.js';
import { batchMoveSize } from '../config.js';
import { AmbiguousWriteError, type TaskHead, type TaskItem, type TaskOwnership } from '../store/store.js';
import type { NodeContext } from './context.js';

/** What moves ask of the rest of the node. */
export interface MovesHooks {
  /** A move to this node may have landed unseen: look at this node's own tasks at the next `passes` passes. */
  lookAgain(passes: number): void;
  /** A move of ours whose reply never came did land, with `owner`: it was never told, and must be. */
  landedWith(owner: string, id: string): void;
}

/** What a caller of Moves.move may add around the write. */
export interface MoveOptions {
  /** Called if the outcome stays unknown: the new owner must be told to look until it lands. */
  unsure?: () => void;
  /** Runs after pacing, as the write is sent (a receiver's forewarning). */
  beforeWrite?: () => void;
}

/** Where a task moves: an owner and its incarnation (null and 0: back to the pool). */
export interface Destination {
  owner: string | null;
  ownerInc: number;
}

/**
 * Every change of a task's owner is a compare-and-set on the owner, incarnation and fencing
 * token it expects. This part makes those moves and owns what is left of the ones whose
 * outcome is unknown: until such a move is settled, the task it concerns runs nowhere here.
 */
export class Moves {
  /** Our own tasks whose move away had an unknown outcome, with the ownership that move expected. */
  private readonly unsettled = new Map<string, TaskOwnership>();
  private readonly budget: WriteBudget;

  constructor(
    private readonly node: NodeContext,
    private readonly hooks: MovesHooks,
  ) {
    this.budget = new WriteBudget(node.clock, node.config.moveWriteUnitsPerSecond);
  }

  /**
   * Waits until the write units of moving `tasks` may be spent (moveWriteUnitsPerSecond),
   * twice over for a transaction, which DynamoDB bills as two writes per item.
   */
  pace(tasks: readonly TaskHead[], transaction = false): Promise<void> {
    const units = tasks.reduce((sum, task) => sum + writeUnits(task), 0);
    return this.budget.spend(transaction ? 2 * units : units);
  }

  /** The ownership an unsettled move of this task expected, if one is pending. */
  pending(id: string): TaskOwnership | undefined {
    return this.unsettled.get(id);
  }

  /** Tasks whose move away is still unsettled: a live view, which settling shrinks as it goes. */
  pendingIds(): IterableIterator<string> {
    return this.unsettled.keys();
  }

  /** Declared dead: the new incarnation's reclaims race the old moves by the same conditions, nothing to settle by hand. */
  forgetAll(): void {
    this.unsettled.clear();
  }

  /**
   * A task's compare-and-set move. The store already recognises its own effect when a retry
   * follows an ambiguous attempt; if every attempt was ambiguous, re-read and reconcile here
   * instead of assuming failure (a move that did land must not leave the task unrun).
   */
  async move(task: TaskHead, to: Destination, how: MoveOptions = {}): Promise<TaskItem | undefined> {
    const { node } = this;
    try {
      await this.pace([task]);
      how.beforeWrite?.();
      return await node.store.moveTask(task.id, task, to);
    } catch (error) {
      if (!(error instanceof AmbiguousWriteError)) throw error;
      if (task.owner === node.id && task.ownerInc === node.inc() && to.owner !== node.id) {
        // One of our own tasks on its way out: a read proves nothing, settle it (see settle()).
        this.unsettled.set(task.id, { owner: task.owner, ownerInc: task.ownerInc, token: task.token });
        // Settled here, the caller tells the receiver if it landed: no ring of settle()'s own.
        const now = await this.settle(task.id, false);
        return movedTo(now, task, to) ? now : undefined;
      }
      // Anyone else's task (a claim, a takeover): the write may still land, so the new owner
      // must look again: this node at its next two passes, another node once told (unsure).
      // Nobody runs the task meanwhile.
      const now = await node.store.getTask(task.id).catch(() => undefined);
      if (movedTo(now, task, to)) return now;
      if (to.owner === node.id) this.hooks.lookAgain(2);
      how.unsure?.();
      return undefined;
    }
  }

  /**
   * Settles a move of one of our own tasks whose outcome is unknown. Such a write may still
   * land at any time: a request the client gave up on is not cancelled, so a read that shows
   * the task still here proves nothing, and running it again could let the late write hand
   * it to a peer that runs it too. A conditional write on the same expected state settles it:
   * it keeps the task here under a new token, and of the two writes exactly one can win. Once
   * the token has moved past the expected one, the pending write can never land. Until then
   * the task does not run here (see Holdings.adopt).
   */
  async settle(id: string, tellReceiver = true): Promise<TaskItem | undefined> {
    const { node } = this;
    const expected = this.unsettled.get(id);
    if (!expected) return node.store.getTask(id).catch(() => undefined);
    try {
      await this.budget.spend(1);
      const kept = await node.store.moveTask(id, expected, { owner: node.id, ownerInc: node.inc() });
      if (kept) {
        this.unsettled.delete(id);
        return kept;
      }
      const now = await node.store.getTask(id);
      // Not where we expected it: the token moved on (or the task ended), so nothing of ours is pending.
      this.unsettled.delete(id);
      // One step on, with another node: most likely our own move, whose request arrived but
      // whose reply did not (a partition began). Nobody has told that node, which would
      // otherwise find the task only at its periodic reconcile (the fault harness saw 13 s).
      if (tellReceiver && now && now.owner !== null && now.owner !== node.id && now.token === expected.token + 1) this.hooks.landedWith(now.owner, id);
      return now;
    } catch {
      return undefined; // still unknown; tried again next period
    }
  }
}

/**
 * Whether `now` is `task` after a move to `to`: the new owner and incarnation, token one up.
 * Tokens never go back, so a consistent read showing it proves the move landed, whoever's
 * write it was.
 */
export function movedTo(now: TaskItem | undefined, task: TaskHead, to: Destination): now is TaskItem {
  return now !== undefined && now.owner === to.owner && now.ownerInc === to.ownerInc && now.token === task.token + 1;
}

/** Runs `fn` over items with at most `limit` in flight: a bounded number of round trips, never one after another. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

/** DynamoDB's write units for writing one task item: one per started KB. */
function writeUnits(task: TaskHead): number {
  return Math.max(1, Math.ceil((task.itemBytes ?? unknownItemBytes) / 1024));
}

/**
 * A budget of write units per second on this node's clock, a second's worth at once. A spend
 * beyond it runs into debt and waits until the debt is paid off at the budget's rate, so
 * concurrent movers are spaced in the order they asked, and nobody waits when there is none.
 */
class WriteBudget {
  private balance: number;
  private at: number;

  constructor(
    private readonly clock: Clock,
    private readonly perSecond: number,
  ) {
    this.balance = perSecond;
    this.at = clock.now();
  }

  async spend(units: number): Promise<void> {
    if (!(this.perSecond > 0)) return;
    const now = this.clock.now();
    this.balance = Math.min(this.perSecond, this.balance + ((now - this.at) * this.perSecond) / 1000);
    this.at = now;
    this.balance -= units;
    if (this.balance < 0) await sleep(this.clock, (-this.balance * 1000) / this.perSecond);
  }
}

/** Bytes of task items one batch move may carry: DynamoDB allows 4 MB per transaction, this leaves room for the encoding. */
const batchMoveBytes = 2 * 2 ** 20;

/** What a task item of unknown size is assumed to weigh (one created before items recorded it). */
const unknownItemBytes = 4096;

/** Splits one peer's tasks into transactions: at most batchMoveSize tasks and 2 MB of items each. */
export function transactionChunks<T extends TaskHead>(tasks: readonly T[]): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const task of tasks) {
    const size = task.itemBytes ?? unknownItemBytes;
    if (chunk.length > 0 && (chunk.length >= batchMoveSize || bytes + size > batchMoveBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(task);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

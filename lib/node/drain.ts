import { settledWithin } from '../clock.js';
import { errorText } from '../log.js';
import { placeTasks } from '../protocol/placement.js';
import type { NodeItem, TaskItem } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Holdings } from './holdings.js';
import type { Moves } from './moves.js';
import type { Mover } from './mover.js';

/**
 * An operator's drain (`keeper drain`, `TaskAdmin.drain`): while this node's item carries the
 * flag, the node takes no new tasks and hands the ones it holds to other nodes, a few per
 * pass, each stopped just before it moves, so that each moves once and runs nowhere in
 * between for longer than its handler takes to stop. Owns whether this node drains, as its
 * latest heartbeat reply said (the flag is the operator's, in the table; this is the node's
 * view of it).
 *
 * Peers learn of the drain from the node item too (`NodeItem.draining`): they place nothing
 * on a draining node, push no rebalancing towards it and read its arc of the free pool
 * themselves (Mover.candidates, Pool).
 */
export class Drain {
  private draining = false;

  constructor(
    private readonly node: NodeContext,
    private readonly holdings: Holdings,
    private readonly moves: Moves,
    private readonly mover: Mover,
  ) {}

  /** Whether the node drains now: it claims nothing, rebalances nothing, and is nobody's target. */
  get active(): boolean {
    return this.draining;
  }

  /** This node's item as a join or a heartbeat returned it. */
  seen(item: NodeItem): void {
    const draining = item.draining === true;
    if (draining === this.draining) return;
    this.draining = draining;
    this.node.emit('drain', { draining, tasks: this.holdings.size });
    this.node.log.info(draining ? 'draining: taking no new tasks, handing these to other nodes' : 'drain lifted: taking tasks again', { node: this.node.id, tasks: this.holdings.size });
  }

  /** Whether this pass has drain work: handing tasks out, or keeping the ones a lifted drain left stopped. */
  due(): boolean {
    return this.draining || this.holdings.stoppedForMove().length > 0;
  }

  /**
   * One pass of the drain: stops up to `maxMovesPerTick` tasks that another node can take,
   * waits up to `handlerStopMs` for their handlers to return, and moves every task whose run
   * is over (this batch's, and any that stopped late since). A task the move could not hand
   * on is run here again; one whose move has an unknown outcome is left to Holdings.resettle.
   */
  async handOff(): Promise<void> {
    const { node, holdings } = this;
    if (!this.draining) {
      // Lifted while a handler was still stopping: it runs here again, it has not moved.
      for (const task of holdings.stoppedForMove()) holdings.keep(task.id);
      return;
    }
    const inFlight = holdings.held().filter((h) => holdings.isOutgoing(h.task.id)).length;
    const room = node.config.maxMovesPerTick - inFlight;
    const next = holdings.held().filter((h) => !holdings.isOutgoing(h.task.id) && !this.moves.pending(h.task.id)).slice(0, Math.max(0, room)).map((h) => h.task);
    if (next.length > 0) {
      // Only what some other node can take now: stopping a task that has to stay (no other
      // node runs its type, or all are full) would only restart it.
      const { assigned } = placeTasks(next, await this.mover.candidates(node.id));
      const stops = [...assigned.values()].flat().map((task) => holdings.stopForMove(task.id, 'draining'));
      await settledWithin(node.clock, stops, node.config.handlerStopMs);
    }
    const ready = holdings.stoppedForMove();
    if (ready.length === 0) return;
    const moved = await this.mover.distribute(ready, { exclude: node.id, reason: 'drain', unplaced: 'leave' });
    await this.settle(ready);
    if (holdings.size === 0) node.log.info('drained: every task handed to other nodes', { node: node.id, moved });
  }

  /**
   * After the moves: a consistent read says which tasks left. Those go; those still this
   * node's under the same token (nobody could take them after all) run here again. If the
   * read fails, they stay stopped and the next pass moves them: each move is a compare-and-set
   * on the token they had, so a move that landed unseen cannot happen twice.
   */
  private async settle(tasks: TaskItem[]): Promise<void> {
    const { node, holdings } = this;
    const now = await node.store.getTasks(tasks.map((t) => t.id)).catch((error: unknown) => {
      node.log.warn('drain: could not read the tasks it moved; looking again next pass', { node: node.id, error: errorText(error) });
      return undefined;
    });
    if (!now) return;
    for (const task of tasks) {
      if (this.moves.pending(task.id)) continue;
      const current = now.get(task.id);
      if (current && holdings.isMine(current) && current.token === task.token) holdings.keep(task.id);
      // Still ours under a newer token (an operator's payload update refused the move): a
      // new holding, which runs here until a later pass hands it over.
      else if (current && holdings.isMine(current)) holdings.adopt(current);
      else await holdings.drop(task.id, 'drained');
    }
  }
}

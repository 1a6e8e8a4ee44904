import type { MemberEntry } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Mover } from './mover.js';
import type { Neighbourhood } from './neighbourhood.js';

/**
 * Backstop for takeovers that did not finish (the detector died mid-way, a move was
 * ambiguous, an index lagged): tasks still owned by dead or departed nodes are handed out
 * by their nearest live predecessor on the ring (exactly one node has a given tombstone in
 * its gap), and empty tombstones are removed. Owns when each tombstone is due and how many
 * times it was found empty.
 */
export class Sweeper {
  /** When to sweep each tombstone that appeared in the gap (maintenance pass). */
  private readonly sweepAt = new Map<string, number>();
  private readonly emptySweeps = new Map<string, number>();

  constructor(
    private readonly node: NodeContext,
    private readonly neighbourhood: Neighbourhood,
    private readonly mover: Mover,
  ) {}

  /**
   * A tombstone appeared in this node's gap. A departed node's leftovers can be swept at
   * once; a dead one's only after its declarer had time to hand them out and look again
   * (follow-ups at 2 and 6 passes).
   */
  tombstoneSeen(tomb: MemberEntry): void {
    this.sweepAt.set(tomb.id, this.node.passes() + (tomb.state === 'left' ? 1 : 8));
  }

  /** Whether this pass sweeps: it is periodic, or a tombstone is due. */
  due(): boolean {
    return this.node.periodic() || [...this.sweepAt.values()].some((at) => at <= this.node.passes());
  }

  async sweep(): Promise<void> {
    const { node, neighbourhood } = this;
    for (const id of this.sweepAt.keys()) if (!neighbourhood.gap.some((t) => t.id === id)) this.sweepAt.delete(id);
    for (const tomb of neighbourhood.gap) {
      if (node.phase() !== 'running') return;
      const due = this.sweepAt.get(tomb.id);
      if (due !== undefined && due > node.passes() && !node.periodic()) continue;
      this.sweepAt.delete(tomb.id);
      const tasks = await this.mover.orphansOf(tomb.id);
      if (tasks.length > 0) {
        this.emptySweeps.delete(tomb.id);
        const moved = await this.mover.distribute(tasks, { exclude: tomb.id, reason: 'sweep' });
        node.log.info('swept tasks of a departed node', { node: node.id, departed: tomb.id, tasks: tasks.length, moved });
        continue;
      }
      const empty = (this.emptySweeps.get(tomb.id) ?? 0) + 1;
      this.emptySweeps.set(tomb.id, empty);
      if (empty < 2) continue;
      const item = await node.store.getNode(tomb.id);
      if (item && item.state !== 'alive' && (await node.store.removeNode(tomb.id, { inc: item.inc, state: item.state }))) {
        this.emptySweeps.delete(tomb.id);
      }
    }
  }
}

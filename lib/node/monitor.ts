import { sleep } from '../clock.js';
import { followUpPasses } from '../config.js';
import { Detector } from '../protocol/detector.js';
import { AmbiguousWriteError, type ClusterItem, type NodeItem, type WatchRecord } from '../store/store.js';
import type { NodeContext } from './context.js';
import type { Neighbourhood } from './neighbourhood.js';

/** What watching peers asks of the rest of the node. */
export interface MonitorHooks {
  /** This node's own counter: every observation is measured against it. */
  counter(): number;
  leaseValid(): boolean;
  /** Hand out a dead node's tasks (`followUp`: a second look, quiet if nothing is left). */
  takeOver(node: string, followUp?: boolean): Promise<void>;
}

/** One pass's read of the watched peers. */
export interface Observation {
  /** The cluster item, on the passes that read it (see Neighbourhood.readsClusterNow). */
  cluster: ClusterItem | undefined;
}

/**
 * Failure detection: reads the watched peers once per pass, judges their staleness against
 * the benchmark (the cluster's own counters), declares the stale ones dead by compare-and-set
 * (one observer wins) and has their tasks taken over, with two later looks for tasks that
 * reached the dead node late. Owns the detector, the peers as last read, and the follow-ups.
 */
export class Monitor {
  private detector: Detector;
  private peers = new Map<string, NodeItem>();
  private readonly followUps: Array<{ node: string; atPass: number }> = [];

  constructor(
    private readonly node: NodeContext,
    private readonly neighbourhood: Neighbourhood,
    private readonly hooks: MonitorHooks,
  ) {
    this.detector = this.newDetector();
  }

  /** A new incarnation: a fresh detector, seeded with the sightings its item carried over. */
  reset(watch: Record<string, WatchRecord>): void {
    this.detector = this.newDetector();
    this.detector.seed(watch);
  }

  /** The sightings to publish with the next heartbeat. */
  records(): Record<string, WatchRecord> {
    return this.detector.records();
  }

  /** A peer as this pass read it (watched peers and warm-up witnesses only). */
  peer(id: string): NodeItem | undefined {
    return this.peers.get(id);
  }

  /** Whether the peer's counter moved at the last look. */
  advancing(id: string): boolean {
    return this.detector.advancing(id);
  }

  /** Staleness of a peer, in benchmark ticks. */
  staleness(id: string): number {
    return this.detector.staleness(id);
  }

  /** Reads the watched peers (and the cluster item, when due); undefined if the node stopped running meanwhile. */
  async observe(): Promise<Observation | undefined> {
    const { node, neighbourhood } = this;
    const witnesses = neighbourhood.witnesses();
    const read = await node.store.readNodes([...neighbourhood.watched, ...witnesses], { cluster: neighbourhood.readsClusterNow() });
    if (node.phase() !== 'running') return undefined;
    const { nodes, cluster, unread } = read;
    for (const id of neighbourhood.watched) if (!unread.has(id) && nodes.get(id)?.state !== 'alive') neighbourhood.markChanged();
    this.peers = nodes;
    // The own counter is taken after the read returned, never before: its ticks from then on
    // all come after every value the read saw.
    this.detector.observe(this.hooks.counter(), read, neighbourhood.watched);
    return { cluster };
  }

  /** Declares every stale peer dead that this node wins the declaration for, and takes its tasks over. */
  async declareStale(): Promise<void> {
    const { node } = this;
    for (const suspect of this.detector.suspects()) {
      if (node.phase() !== 'running' || !this.hooks.leaseValid()) break;
      if (!(await this.declare(suspect))) {
        this.detector.forget(suspect.id);
        continue;
      }
      this.detector.forget(suspect.id);
      this.neighbourhood.markChanged();
      node.emit('declared-dead', { node: suspect.id, staleness: suspect.staleness });
      node.log.warn('declared peer dead', { node: node.id, peer: suspect.id, staleness: suspect.staleness, counter: suspect.counter });
      // Look again shortly: a peer may have handed it a task just before it was declared
      // dead, and on DynamoDB the owner index may lag behind the table. Scheduled before the
      // takeover, so that a takeover cut short by a store error is retried two passes later
      // rather than left to the tombstone sweep (chaos finding 13).
      for (const after of followUpPasses) this.followUps.push({ node: suspect.id, atPass: node.passes() + after });
      await this.hooks.takeOver(suspect.id);
    }
  }

  /** The second and third looks at the tasks of nodes this node declared dead. */
  async followUp(): Promise<void> {
    for (const due of this.followUps.filter((f) => f.atPass <= this.node.passes())) {
      this.followUps.splice(this.followUps.indexOf(due), 1);
      await this.hooks.takeOver(due.node, true);
    }
  }

  private newDetector(): Detector {
    return new Detector(this.node.id, this.node.config);
  }

  /**
   * The compare-and-set that decides who detected a failure first. If its reply is lost, the
   * item itself says whether we won: state 'dead' with deadBy = us.
   */
  private async declare(suspect: { id: string; inc: number; counter: number }): Promise<boolean> {
    const { node } = this;
    try {
      return await node.store.declareDead(suspect.id, suspect, node.id);
    } catch (error) {
      if (!(error instanceof AmbiguousWriteError)) throw error;
      for (let attempt = 1; attempt <= 3; attempt++) {
        const item = await node.store.getNode(suspect.id).catch(() => undefined);
        if (item) return item.state === 'dead' && item.deadBy === node.id && item.inc === suspect.inc;
        await sleep(node.clock, node.backoffMs(attempt));
      }
      // Still unknown: if we did win, the tombstone sweep hands the tasks out.
      return false;
    }
  }
}

import { sleep } from '../clock.js';
import { ConfigError } from '../config.js';
import { errorText } from '../log.js';
import { publishedSettings, ticksToDeclare } from '../protocol/peer-settings.js';
import { AmbiguousWriteError, StoreUnavailableError, type NodeItem, type ProtocolSettings } from '../store/store.js';
import type { NodeContext } from './context.js';
import { readNeighbourhood } from './neighbourhood.js';

/** Another live process holds this node id. */
export class NodeIdInUseError extends Error {
  override name = 'NodeIdInUseError';
}

/** What joining needs from the rest of the node. */
export interface JoinHooks {
  /** The incarnation and counter the node last ran with (0 before its first join). */
  inc(): number;
  counter(): number;
  types(): string[];
  /** This incarnation's doorbell address, published in its node item. */
  bell(): string | undefined;
  /** Source of fresh incarnation numbers (seeded in the simulator). */
  random(): number;
  /** The join write landed, sent at `sentAt` and known to have landed at `confirmedAt`: take up that incarnation. */
  joined(node: NodeItem, sentAt: number, confirmedAt: number): Promise<void>;
}

/** The settings peers judge this node by (protocol/peer-settings.ts), as published in its node item. */
export function protocolSettings(node: NodeContext): ProtocolSettings {
  const { periodMs, staleTicks, driftBound, fenceMs, handlerStopMs, requestTimeoutMs } = node.config;
  return { periodMs, staleTicks, driftBound, fenceMs, handlerStopMs, requestTimeoutMs };
}

/**
 * Joining the cluster, at start or after this incarnation was declared dead. Owns the join
 * writes sent since the last join that landed: a rejoin that failed after its write landed
 * unseen must recognise that write at its next try, not mistake it for another process.
 */
export class Join {
  /** joinedAt of each join write sent since the last successful join, with its send time. */
  private readonly attempts = new Map<string, number>();

  constructor(
    private readonly node: NodeContext,
    private readonly hooks: JoinHooks,
  ) {}

  /**
   * Joins (`firstStart`: the node's first), retrying while the store is unreachable and the
   * node still wants in: writes a new incarnation of this node's item, unless an earlier
   * attempt landed unseen.
   */
  async join(firstStart: boolean): Promise<void> {
    const { node, hooks, attempts } = this;
    for (let attempt = 1; node.phase() === 'joining' || (!firstStart && node.phase() === 'running'); attempt++) {
      try {
        if (firstStart && attempt === 1) await checkSettings(node);
        const existing = await node.store.getNode(node.id);
        const ours = existing && existing.state === 'alive' ? attempts.get(existing.joinedAt) : undefined;
        if (existing && ours !== undefined) {
          // An earlier attempt of ours whose reply was lost landed after all: the lease runs
          // from that attempt's send time.
          attempts.clear();
          await hooks.joined(existing, ours, node.clock.now());
          return;
        }
        if (existing && existing.state === 'alive' && existing.inc !== hooks.inc()) {
          await waitForHolder(node, existing);
          continue;
        }
        const sentAt = node.clock.now();
        const bell = hooks.bell();
        const item: NodeItem = {
          id: node.id,
          // A fresh item gets a random incarnation so that (incarnation, counter) pairs of
          // an earlier item with the same id can never be mistaken for this one's.
          inc: existing ? existing.inc + 1 : 1 + Math.floor(hooks.random() * 2 ** 30),
          counter: Math.max(existing?.counter ?? 0, hooks.counter()) + 1,
          state: 'alive',
          inbox: existing?.inbox ?? 0,
          neighbours: existing?.neighbours ?? 0,
          taskCount: 0,
          capacity: node.config.capacity,
          types: hooks.types(),
          watch: existing?.watch ?? {},
          settings: protocolSettings(node),
          joinedAt: new Date().toISOString(),
          ...(bell ? { bell } : {}),
          ...(node.config.appVersion !== undefined ? { version: node.config.appVersion } : {}),
          ...(node.config.labels && Object.keys(node.config.labels).length > 0 ? { labels: node.config.labels } : {}),
          // An operator's drain outlives a rejoin of this process (declared dead after a long
          // pause, say), which must not quietly put it back to work; a new process starts
          // undrained, whatever a tombstone of its id still says.
          ...(!firstStart && existing?.draining ? { draining: true } : {}),
        };
        attempts.set(item.joinedAt, sentAt);
        if (!(await joinAs(node, item, existing))) continue;
        attempts.clear();
        await hooks.joined(item, sentAt, node.clock.now());
        return;
      } catch (error) {
        // Only an unreachable or ambiguous store is worth waiting out; a missing table or
        // denied access is a configuration problem the operator has to see.
        if (!(error instanceof StoreUnavailableError || error instanceof AmbiguousWriteError)) throw error;
        node.log.warn('join failed; retrying', { node: node.id, attempt, error: errorText(error) });
        await sleep(node.clock, node.backoffMs(attempt));
      }
    }
  }
}

/**
 * Nodes judge each peer by the settings it publishes, so different settings are safe together
 * (a rolling change of them), except next to a node of a keeper from before that: it judges
 * every peer by its own settings (its item publishes no request timeout), and a node with a
 * longer fence window than it assumes could still run a task after it took it. So a node
 * refuses to join next to such a node when their settings differ.
 */
async function checkSettings(node: NodeContext): Promise<void> {
  const { successors } = await readNeighbourhood(node.store, node.id, node.config.watchPeers);
  if (successors.length === 0) return;
  const { nodes } = await node.store.readNodes(
    successors.map((m) => m.id),
    { cluster: false },
  );
  const mine = protocolSettings(node);
  for (const peer of nodes.values()) {
    const theirs = peer.settings;
    if (!theirs || peer.state !== 'alive' || theirs.requestTimeoutMs !== undefined) continue;
    const differ = (Object.keys(theirs) as Array<keyof ProtocolSettings>).filter((key) => theirs[key] !== mine[key]);
    if (differ.length === 0) continue;
    const show = (s: ProtocolSettings) => differ.map((key) => `${key} ${s[key]}`).join(', ');
    throw new ConfigError(
      `live node "${peer.id}" runs an older keeper that judges every peer by its own settings (${show(theirs)}; this node: ${show(mine)}): upgrade every node with the same settings first, then change them`,
    );
  }
}

/** The join write; after a lost reply the item itself tells whether it landed. */
async function joinAs(node: NodeContext, item: NodeItem, existing: NodeItem | undefined): Promise<boolean> {
  try {
    const expected = existing && { inc: existing.inc, state: existing.state, ...(existing.draining ? { draining: true } : {}) };
    return await node.store.joinNode(item, expected);
  } catch (error) {
    if (!(error instanceof AmbiguousWriteError)) throw error;
    const now = await node.store.getNode(node.id);
    return now !== undefined && now.inc === item.inc && now.joinedAt === item.joinedAt && now.state === 'alive';
  }
}

/**
 * Our id is held by a live-looking incarnation: a previous run of this node that crashed,
 * or another process started with the same id by mistake. Watch its counter on our own
 * clock. If it moves, the id is in use; if it stands still for as many of our periods as a
 * peer would count against it (K when it ran our settings: at least (K-1)*P/f of real time;
 * more when it published a longer fence window or period, ticksToDeclare), it is dead and
 * we declare it so.
 */
async function waitForHolder(node: NodeContext, holder: NodeItem): Promise<void> {
  node.log.warn('node id is held by a live-looking incarnation; checking whether it still runs', { node: node.id, inc: holder.inc });
  // A live holder moves its counter every period. A crashed one's last requests may still
  // land a little after it died, so one or two moves prove nothing: only a counter that
  // keeps moving means the id is in use; K still periods in a row mean it is dead.
  let last = holder.counter;
  let moves = 0;
  const theirs = publishedSettings(holder.settings, node.config);
  const needed = ticksToDeclare(node.config, node.config, theirs);
  for (let still = 0; still < needed; ) {
    await sleep(node.clock, node.config.periodMs);
    const now = await node.store.getNode(node.id);
    if (!now || now.state !== 'alive' || now.inc !== holder.inc) return;
    if (now.counter === last) {
      still += 1;
      continue;
    }
    last = now.counter;
    still = 0;
    if (++moves >= 3) {
      throw new NodeIdInUseError(`node id "${node.id}" is in use by another live process (its counter is advancing); choose another --node-id`);
    }
  }
  if (await node.store.declareDead(node.id, { inc: holder.inc, counter: last }, node.id)) {
    node.emit('declared-dead', { node: node.id, staleness: theirs.staleTicks });
  }
}

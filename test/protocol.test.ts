import { describe, expect, it } from 'vitest';
import { failoverBoundMs, mixedFailoverBoundMs, resolveConfig, type KeeperOptions } from '../lib/config.js';
import { ticksToDeclare, witnessStallTicks, type PeerSettings } from '../lib/protocol/peer-settings.js';
import { benchmark, Detector } from '../lib/protocol/detector.js';
import { isOutdated, newestVersion, placeTasks, rebalanceCount, rendezvous } from '../lib/protocol/placement.js';
import { claimArcs, inArc, ringKey, ringOrder, watchedPeers } from '../lib/protocol/ring.js';
import { taskSlot } from '../lib/store/items.js';
import type { NodeItem } from '../lib/store/store.js';

function item(id: string, counter: number, extra: Partial<NodeItem> = {}): NodeItem {
  return { id, inc: 1, counter, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 10, types: ['demo'], watch: {}, joinedAt: 'j', ...extra };
}
/** Settings with no drift and near-instant requests: K ticks of anyone declare, a witness still for 2 ticks no longer counts. */
const settings = (over: Partial<PeerSettings> = {}): PeerSettings => ({ periodMs: 1000, staleTicks: 4, driftBound: 1, requestTimeoutMs: 1, fenceMs: 1, handlerStopMs: 0, ...over });
const read = (...items: NodeItem[]) => ({ nodes: new Map(items.map((i) => [i.id, i])), unread: new Set<string>(), rounds: new Map<string, number>() });

describe('detector: staleness from the cluster\'s own counters', () => {
  it('takes the strongest evidence, discounting the single strongest once there are three witnesses', () => {
    expect(benchmark([])).toBeUndefined();
    expect(benchmark([5])).toBe(5);
    expect(benchmark([9, 1])).toBe(9);
    expect(benchmark([3, 9, 1])).toBe(3);
    expect(benchmark([3, 9, 1, 8])).toBe(8);
  });

  it('counts ticks of the witnesses since the peer\'s value was first seen, not time on anyone\'s clock', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.observe(10, read(item('p', 7), item('w1', 100), item('w2', 50)), ['p', 'w1', 'w2']);
    expect(d.staleness('p')).toBe(0);
    d.observe(12, read(item('p', 7), item('w1', 102), item('w2', 52)), ['p', 'w1', 'w2']);
    expect(d.staleness('p')).toBe(2);
    d.observe(14, read(item('p', 7), item('w1', 104), item('w2', 54)), ['p', 'w1', 'w2']);
    expect(d.suspects()).toEqual([{ id: 'p', inc: 1, counter: 7, staleness: 4 }]);
    // The peer's counter moves: it starts over.
    d.observe(15, read(item('p', 8), item('w1', 105), item('w2', 55)), ['p', 'w1', 'w2']);
    expect(d.staleness('p')).toBe(0);
  });

  it('starts a sighting only from witness counters read no earlier than the peer\'s value', () => {
    // One read took two requests: w1 and w2 were read by the first, p's value by the second,
    // after the store left p's key unprocessed. Between the two, p's heartbeat landed and the
    // witnesses advanced: their counters from the first request predate p's value.
    const d = new Detector('me', settings({ staleTicks: 3 }));
    const split = read(item('p', 7), item('w1', 100), item('w2', 50), item('w3', 20));
    d.observe(10, { ...split, rounds: new Map([['p', 2], ['w3', 2]]) }, ['p']);
    d.observe(10, read(item('p', 7), item('w1', 103), item('w2', 53), item('w3', 21)), ['p']);
    // Only this node (0 ticks) and w3 (1 tick, read with p) count: w1's and w2's 3 ticks may
    // all have come before p's heartbeat.
    expect(d.staleness('p')).toBe(1);
    expect(d.suspects()).toEqual([]);
  });

  it('treats a peer the store left unread as not observed: its sighting neither restarts nor ends', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.observe(10, read(item('p', 7), item('w1', 100), item('w2', 50)), ['p']);
    const unread = read(item('w1', 102), item('w2', 52));
    d.observe(12, { ...unread, unread: new Set(['p']) }, ['p']);
    expect(d.staleness('p')).toBe(2);
    d.observe(14, read(item('p', 7), item('w1', 104), item('w2', 54)), ['p']);
    expect(d.suspects()).toEqual([{ id: 'p', inc: 1, counter: 7, staleness: 4 }]);
  });

  it('is not fooled by one witness whose clock runs far too fast', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.observe(10, read(item('p', 7), item('fast', 0), item('w', 0)), ['p', 'fast', 'w']);
    d.observe(11, read(item('p', 7), item('fast', 50), item('w', 1)), ['p', 'fast', 'w']);
    // Evidence: this node 1, w 1, fast 50: the outlier is discounted.
    expect(d.staleness('p')).toBe(1);
  });

  it('leaves out witnesses that stopped advancing, so neighbours dying together do not hide each other', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.observe(10, read(item('p', 7), item('q', 3), item('r', 4)), ['p', 'q', 'r']);
    for (let c = 11; c <= 16; c++) d.observe(c, read(item('p', 7), item('q', 3), item('r', 4)), ['p', 'q', 'r']);
    // q and r are stuck too; only this node's own counter still counts.
    expect(d.staleness('p')).toBe(6);
  });

  it('uses a live witness\'s published sighting, so a fresh observer need not wait a full window', () => {
    const d = new Detector('fresh', settings({ staleTicks: 4 }));
    const witness = item('w', 40, { watch: { p: { inc: 1, counter: 7, since: 34 } } });
    d.observe(1, read(item('p', 7), witness), ['p', 'w']);
    d.observe(2, read(item('p', 7), { ...witness, counter: 41 }), ['p', 'w']);
    expect(d.staleness('p')).toBe(7);
    // A sighting of an older value is no evidence about the current one.
    const d2 = new Detector('fresh', settings({ staleTicks: 4 }));
    const old = item('w', 40, { watch: { p: { inc: 1, counter: 6, since: 30 } } });
    d2.observe(1, read(item('p', 7), old), ['p', 'w']);
    d2.observe(2, read(item('p', 7), { ...old, counter: 41 }), ['p', 'w']);
    expect(d2.staleness('p')).toBe(1);
  });

  it('forgets a sighting when the item disappears, so a re-created item never inherits its age', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.observe(10, read(item('p', 7)), ['p']);
    d.observe(13, read(), ['p']);
    d.observe(14, read(item('p', 7)), ['p']);
    expect(d.staleness('p')).toBe(0);
  });

  it('resumes its own published sightings after a restart', () => {
    const d = new Detector('me', settings({ staleTicks: 4 }));
    d.seed({ p: { inc: 1, counter: 7, since: 10 } });
    d.observe(13, read(item('p', 7)), ['p']);
    expect(d.staleness('p')).toBe(3);
  });
});

describe('detector: nodes running different settings (a rolling change of them)', () => {
  const at = (periodMs: number, extra: KeeperOptions = {}) => {
    const c = resolveConfig({ periodMs, ...extra });
    const published = { periodMs: c.periodMs, staleTicks: c.staleTicks, driftBound: c.driftBound, fenceMs: c.fenceMs, handlerStopMs: c.handlerStopMs, requestTimeoutMs: c.requestTimeoutMs };
    return { config: c, published };
  };

  it('needs exactly K ticks when every node runs the same settings, and the bound is failoverBoundMs', () => {
    for (const periodMs of [100, 333.3, 500, 1000, 4000]) {
      for (const options of [{}, { staleTicks: 6 }, { driftBound: 2, staleTicks: 9 }, { driftBound: 1.2, staleTicks: 5, handlerStopMs: 50 }, { driftBound: 1.01, staleTicks: 3 }]) {
        const { config } = at(periodMs, options);
        expect(ticksToDeclare(config, config, config)).toBe(config.staleTicks);
        expect(mixedFailoverBoundMs([config], 1000)).toBeCloseTo(failoverBoundMs(config, 0, 1000), 6);
      }
    }
  });

  it('judges a peer by its own fence window and patience, and each witness by its own period', () => {
    const fast = at(500).config;
    const slow = at(750).config;
    // A 750 ms node stands still for 4 of its periods (3,000 ms) before anyone may call it
    // stale: 6 ticks of a 500 ms witness. Its fence window alone would allow 5:
    // (5 - 1) x 500 / 1.05 - (100 + 100) x 1.05 = 1,694.8 ms > 1,288.4 x 1.05 + 75 = 1,427.8 ms.
    expect(ticksToDeclare(fast, fast, slow)).toBe(6);
    // A 500 ms node, witnessed by a 750 ms one: its patience is 2,000 ms, under 3 ticks of
    // 750 ms, and 3 ticks pass its fence window too.
    expect(ticksToDeclare(slow, slow, fast)).toBe(3);
    // Where the fence window decides: a witness that allows clocks 2x off makes every node's
    // window last longer (1,717.9 x 2 + 100 ms) and its own ticks count for less: 10 of them,
    // not the 4 that patience asks.
    const wide = resolveConfig({ driftBound: 2, staleTicks: 9 });
    const plain = resolveConfig({});
    expect(ticksToDeclare(plain, wide, plain)).toBe(10);
    // The bound of such a cluster is the larger peer's, or more: never the smaller one's.
    expect(mixedFailoverBoundMs([fast, slow])).toBeGreaterThanOrEqual(failoverBoundMs(slow));
  });

  it('does not declare a peer with a longer period after K of its own short ticks', () => {
    const mine = at(500);
    const theirs = at(1500);
    const d = new Detector('me', mine.config);
    const p = (counter: number) => item('p', counter, { settings: theirs.published });
    d.observe(10, read(p(7)), ['p']);
    d.observe(14, read(p(7)), ['p']);
    // 4 of this node's 500 ms ticks are 4/12 of the 6,000 ms the peer is owed.
    expect(d.staleness('p')).toBeCloseTo(4 / 3, 9);
    expect(d.suspects()).toEqual([]);
    d.observe(22, read(p(7)), ['p']);
    expect(d.suspects()).toEqual([{ id: 'p', inc: 1, counter: 7, staleness: 4 }]);
  });

  it('counts a witness with a longer period at its own pace, and does not drop it as stalled', () => {
    const mine = at(500);
    const theirs = at(1000);
    const d = new Detector('me', mine.config);
    // w saw p's value first, when w's counter was 95.
    const w = (counter: number) => item('w', counter, { settings: theirs.published, watch: { p: { inc: 1, counter: 7, since: 95 } } });
    const p = item('p', 7, { settings: mine.published });
    d.observe(10, read(p, w(100)), ['p']);
    d.observe(13, read(p, w(101)), ['p']);
    // w ticks about once for every two of ours: 3 of our ticks without a move leave it a witness.
    d.observe(16, read(p, w(101)), ['p']);
    // Evidence: this node 6 ticks of 500 ms; w 6 ticks of 1,000 ms, of which p's fence window
    // needs 3 (patience alone: 2), so they count as 6 x 4 / 3 = 8 of p's ticks.
    expect(ticksToDeclare(mine.config, theirs.config, mine.config)).toBe(3);
    expect(witnessStallTicks(mine.config, theirs.config)).toBe(4);
    expect(d.staleness('p')).toBe(8);
  });
});

describe('placement', () => {
  it('orders the ring by hash and watches k successors', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const ring = ringOrder(ids);
    expect(ring.map(ringKey)).toEqual([...ring.map(ringKey)].sort());
    const at = ring.indexOf('c');
    expect(watchedPeers('c', ids, 2)).toEqual([ring[(at + 1) % 5], ring[(at + 2) % 5]]);
    expect(watchedPeers('c', ['c', 'a'], 3)).toEqual(['a']);
  });

  it('rendezvous hashing spreads keys evenly and moves few when a node goes', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const counts = new Map<string, number>();
    const before = new Map<string, string>();
    for (let i = 0; i < 10_000; i++) {
      const owner = rendezvous(`task-${i}`, nodes)!;
      before.set(`task-${i}`, owner);
      counts.set(owner, (counts.get(owner) ?? 0) + 1);
    }
    for (const n of counts.values()) expect(n).toBeGreaterThan(850);
    const without = nodes.filter((n) => n !== 'n3');
    const moved = [...before].filter(([task, owner]) => owner !== 'n3' && rendezvous(task, without) !== owner);
    expect(moved).toEqual([]);
  });

  it('places tasks least loaded first (relative to capacity), within capacity, only on nodes that run the type', () => {
    const tasks = Array.from({ length: 12 }, (_, i) => ({ id: `t${i}`, type: i < 10 ? 'demo' : 'gpu' }));
    const { assigned, unplaced } = placeTasks(tasks, [
      { id: 'a', inc: 1, load: 6, capacity: 10, types: ['demo'] },
      { id: 'b', inc: 1, load: 0, capacity: 2, types: ['demo'] },
      { id: 'c', inc: 1, load: 0, capacity: 10, types: ['demo', 'gpu'] },
    ]);
    const got = (id: string) => assigned.get(id) ?? [];
    expect(got('b').length).toBeGreaterThanOrEqual(1); // small, but it started empty ...
    expect(got('b').length).toBeLessThanOrEqual(2); // ... and never past its capacity
    expect(got('c').filter((t) => t.type === 'gpu')).toHaveLength(2); // the only node that runs gpu
    expect(got('a').length + 6).toBeLessThanOrEqual(10);
    expect(got('c').length).toBeGreaterThan(got('a').length); // c started empty, a did not
    expect(unplaced).toEqual([]);
    expect(placeTasks([{ id: 'x', type: 'gpu' }], [{ id: 'a', inc: 1, load: 0, capacity: 9, types: ['demo'] }]).unplaced).toHaveLength(1);
    expect(placeTasks([{ id: 'x', type: 'demo' }], [{ id: 'a', inc: 1, load: 9, capacity: 9, types: ['demo'] }]).unplaced).toHaveLength(1);
  });

  it('gives an outdated node a task only when no up-to-date node can take it, however light it is', () => {
    const tasks = Array.from({ length: 12 }, (_, i) => ({ id: `t${i}`, type: i < 10 ? 'demo' : 'gpu' }));
    const { assigned, unplaced } = placeTasks(tasks, [
      { id: 'old', inc: 1, load: 0, capacity: 100, types: ['demo', 'gpu'], outdated: true },
      { id: 'new-a', inc: 1, load: 5, capacity: 8, types: ['demo'] },
      { id: 'new-b', inc: 1, load: 7, capacity: 8, types: ['demo'] },
    ]);
    const got = (id: string) => (assigned.get(id) ?? []).map((t) => t.id);
    // Up to capacity on the new nodes (3 + 1 of the 10), the rest and the gpu tasks only old can run on old.
    expect(got('new-a')).toHaveLength(3);
    expect(got('new-b')).toHaveLength(1);
    expect(got('old').sort()).toEqual(['t10', 't11', ...tasks.slice(0, 10).map((t) => t.id).filter((id) => !got('new-a').includes(id) && !got('new-b').includes(id))].sort());
    expect(unplaced).toEqual([]);
  });

  it('the newest version is the one whose first node joined last, whatever the strings say', () => {
    const at = (s: number) => `2026-12-03T16:00:${String(s).padStart(2, '0')}.000Z`;
    // One version, or none published: nothing is outdated.
    expect(newestVersion([{ version: '1', joinedAt: at(1) }, { version: '1', joinedAt: at(5) }])).toBeUndefined();
    expect(newestVersion([{ joinedAt: at(1) }, { joinedAt: at(5) }])).toBeUndefined();
    // A deploy: the new version's first node joined after every old one.
    expect(newestVersion([{ version: '1.9', joinedAt: at(1) }, { version: '1.10', joinedAt: at(7) }, { version: '1.9', joinedAt: at(3) }])).toBe('1.10');
    // An old node restarted (or rejoined) after the new one joined: its version is still old.
    expect(newestVersion([{ version: 'b', joinedAt: at(1) }, { version: 'a', joinedAt: at(7) }, { version: 'b', joinedAt: at(9) }])).toBe('a');
    // A rollback to 1.0 is the newest, and nodes from before versions were published are old.
    expect(newestVersion([{ version: '2.0', joinedAt: at(1) }, { version: '1.0', joinedAt: at(4) }, { joinedAt: at(0) }])).toBe('1.0');
    expect(isOutdated({ version: '2.0' }, '1.0')).toBe(true);
    expect(isOutdated({}, '1.0')).toBe(true);
    expect(isOutdated({ version: '1.0' }, '1.0')).toBe(false);
    expect(isOutdated({ version: '2.0' }, undefined)).toBe(false);
  });

  it('places higher priorities first when capacity is short, and changes nothing when there is room for all', () => {
    // 12 tasks, priorities 0..3 interleaved (the 3s run gpu, which only b runs), for 7 places.
    const tasks = Array.from({ length: 12 }, (_, i) => ({ id: `t${i}`, type: i % 4 === 3 ? 'gpu' : 'demo', priority: i % 4 }));
    const short = [
      { id: 'a', inc: 1, load: 1, capacity: 4, types: ['demo'] },
      { id: 'b', inc: 1, load: 0, capacity: 4, types: ['demo', 'gpu'] },
    ];
    const { assigned, unplaced } = placeTasks(tasks, short);
    const placed = [...assigned.values()].flat();
    expect(placed).toHaveLength(7);
    // The five left over are the lowest priorities there was no room for ...
    expect(unplaced.map((t) => t.priority).sort()).toEqual([0, 0, 0, 1, 1]);
    // ... and every placed task has at least the priority of every unplaced one of a type it shares a node with.
    expect(Math.min(...placed.filter((t) => t.type === 'demo').map((t) => t.priority))).toBeGreaterThanOrEqual(Math.max(...unplaced.filter((t) => t.type === 'demo').map((t) => t.priority)));
    // With room for all, the placement is exactly the one without priorities.
    const roomy = short.map((c) => ({ ...c, capacity: 20 }));
    const withPriorities = placeTasks(tasks, roomy);
    const without = placeTasks(tasks.map(({ id, type }) => ({ id, type })), roomy);
    expect(withPriorities.unplaced).toEqual([]);
    const ids = (p: typeof without) => [...p.assigned].map(([node, list]) => [node, list.map((t) => t.id)]);
    expect(ids(withPriorities)).toEqual(ids(without));
  });

  it('claims: every free task lies in exactly one node\'s own arc, equal arcs where a node knows the whole ring', () => {
    const tasks = Array.from({ length: 2000 }, (_, i) => taskSlot(`job-${i}`));
    const ownArcs = (ids: string[], known: number, whole: boolean) => {
      const ring = ringOrder(ids);
      return ring.map((id) => {
        const arcs = claimArcs(id, whole ? watchedPeers(id, ring, ring.length) : watchedPeers(id, ring, known), whole);
        expect(arcs[0]!.owner).toBe(id);
        return arcs[0]!;
      });
    };
    const claimantsOf = (arcs: Array<{ owner: string; from: string; to: string }>, slot: string) => arcs.filter((a) => inArc(slot, a)).map((a) => a.owner);

    // Ten nodes that know each other: ten equal arcs, so a backlog splits evenly.
    const small = ownArcs(Array.from({ length: 10 }, (_, i) => `node-${i}`), 8, true);
    const share = new Map<string, number>();
    for (const slot of tasks) {
      const who = claimantsOf(small, slot);
      expect(who).toHaveLength(1);
      share.set(who[0]!, (share.get(who[0]!) ?? 0) + 1);
    }
    for (const count of share.values()) expect(count).toBeGreaterThan(150); // 200 each on average
    // A node's view of its successors' arcs agrees with theirs.
    const a = ringOrder(Array.from({ length: 10 }, (_, i) => `node-${i}`));
    const fromA = claimArcs(a[0]!, a.slice(1), true);
    expect(fromA[3]).toEqual(claimArcs(a[3]!, [...a.slice(4), ...a.slice(0, 3)], true)[0]);

    // 200 nodes, each knowing 8 successors: still one claimant per task (a rendezvous among
    // each node's own neighbourhood would make a task the favourite of about 22 nodes).
    const large = ownArcs(Array.from({ length: 200 }, (_, i) => `node-${i}`), 8, false);
    for (const slot of tasks) expect(claimantsOf(large, slot)).toHaveLength(1);

    // Alone: the whole ring.
    const alone = claimArcs('solo', [], false);
    expect(tasks.every((slot) => inArc(slot, alone[0]!))).toBe(true);
  });

  it('rebalances by half the gap split among pushers, never for a gap below two', () => {
    expect(rebalanceCount(10, 9, 100, 3, 20, true)).toBe(0);
    expect(rebalanceCount(10, 8, 100, 3, 20, true)).toBe(1);
    expect(rebalanceCount(10, 8, 100, 3, 20, false)).toBe(0);
    expect(rebalanceCount(100, 10, 100, 3, 20, false)).toBe(15);
    expect(rebalanceCount(100, 10, 100, 3, 5, false)).toBe(5);
    expect(rebalanceCount(100, 10, 2, 3, 20, false)).toBe(2);
  });
});

import { ringKey } from '../protocol/ring.js';
import { keys, newTaskRecord, notified, ownerAttribute, parseCluster, parseNode, parseTask, parseTaskHead, taskSlot, type Warn } from './items.js';
import {
  maxBatchMove,
  type ClusterItem,
  type DrainResult,
  type HeartbeatInput,
  type HeartbeatResult,
  type MemberEntry,
  type NewTaskRecord,
  type NodeItem,
  type NodeState,
  type NodesRead,
  type Notified,
  type Page,
  type PayloadUpdateResult,
  type SlotRange,
  type Store,
  type TaskHead,
  type TaskItem,
  type TaskOwnership,
  type TaskPatch,
} from './store.js';

type Raw = Record<string, unknown>;

/** Whether a record has a usable identity (numeric incarnation, known state); see DynamoStore.joinNode. */
function hasIdentity(raw: Raw | undefined): boolean {
  return raw !== undefined && typeof raw['inc'] === 'number' && ['alive', 'dead', 'left'].includes(raw['state'] as string);
}

/**
 * The Store contract in memory, for the deterministic simulator and fast unit tests. It keeps
 * raw records, as DynamoDB does, and applies the same conditions and the same parsing, so a
 * corrupt record behaves the same in both. Its indexes are always up to date, which is the
 * most favourable case of DynamoDB's eventually consistent ones; the simulator adds delay
 * and loss on top.
 */
export class MemoryStore implements Store {
  private readonly items = new Map<string, Raw>();
  /** The byOwner index: owner attribute -> keys of task items. */
  private readonly ownerIndex = new Map<string, Set<string>>();
  /** The members index: keys of node items, sorted by ring position. */
  private readonly ringIndex: Array<{ ring: string; key: string }> = [];

  constructor(private readonly warn: Warn = () => {}) {}

  /** Writes a raw record, bypassing every check: for tests that corrupt the table. */
  putRaw(key: { pk: string; sk: string }, record: Raw): void {
    this.mutate(key, () => void this.items.set(`${key.pk}|${key.sk}`, structuredClone({ ...record, ...key })));
  }

  private get(key: { pk: string; sk: string }): Raw | undefined {
    return this.items.get(`${key.pk}|${key.sk}`);
  }

  private set(key: { pk: string; sk: string }, record: Raw): void {
    this.mutate(key, () => void this.items.set(`${key.pk}|${key.sk}`, { ...record, ...key }));
  }

  private delete(key: { pk: string; sk: string }): void {
    this.mutate(key, () => void this.items.delete(`${key.pk}|${key.sk}`));
  }

  /** Every write goes through here, so the indexes follow the items as DynamoDB's would. */
  private mutate<T>(key: { pk: string; sk: string }, change: (raw: Raw | undefined) => T): T {
    const k = `${key.pk}|${key.sk}`;
    const before = this.items.get(k);
    if (before) this.unindex(k, before);
    try {
      return change(before);
    } finally {
      const after = this.items.get(k);
      if (after) this.index(k, after);
    }
  }

  private index(k: string, raw: Raw): void {
    if (String(raw['pk']).startsWith('task#') && typeof raw['owner'] === 'string') {
      const set = this.ownerIndex.get(raw['owner']) ?? new Set<string>();
      set.add(k);
      this.ownerIndex.set(raw['owner'], set);
    }
    if (raw['member'] === keys.memberPartition && typeof raw['ring'] === 'string') {
      this.ringIndex.splice(this.ringAt(raw['ring']), 0, { ring: raw['ring'], key: k });
    }
  }

  private unindex(k: string, raw: Raw): void {
    if (typeof raw['owner'] === 'string') this.ownerIndex.get(raw['owner'])?.delete(k);
    if (raw['member'] === keys.memberPartition && typeof raw['ring'] === 'string') {
      const at = this.ringAt(raw['ring']);
      if (this.ringIndex[at]?.key === k) this.ringIndex.splice(at, 1);
    }
  }

  /** First position in the ring index whose ring key is >= `ring` (binary search). */
  private ringAt(ring: string): number {
    let lo = 0;
    let hi = this.ringIndex.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ringIndex[mid]!.ring < ring) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private node(id: string): NodeItem | undefined {
    const raw = this.get(keys.node(id));
    return raw ? parseNode(structuredClone(raw), this.warn) : undefined;
  }

  private task(id: string): TaskItem | undefined {
    const raw = this.get(keys.task(id));
    return raw ? parseTask(structuredClone(raw), this.warn) : undefined;
  }

  async getNode(id: string): Promise<NodeItem | undefined> {
    return this.node(id);
  }

  async joinNode(node: NodeItem, expected: { inc: number; state: NodeState; draining?: boolean } | undefined): Promise<boolean> {
    const current = this.get(keys.node(node.id));
    const matches =
      expected === undefined
        ? !hasIdentity(current)
        : current?.['inc'] === expected.inc && current?.['state'] === expected.state && (current?.['draining'] === true) === (expected.draining === true);
    if (!matches) return false;
    this.set(keys.node(node.id), { ...structuredClone(node), member: keys.memberPartition, ring: ringKey(node.id) });
    return true;
  }

  async heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    return this.mutate(keys.node(input.id), (current) => this.beat(input, current));
  }

  private beat(input: HeartbeatInput, current: Raw | undefined): HeartbeatResult {
    // A heartbeat never moves the counter back: one that lands after a later one (a request
    // held up on the way) is refused. An unreadable counter is overwritten (it heals).
    const behind = typeof current?.['counter'] === 'number' && current['counter'] > input.counter;
    if (!current || current['inc'] !== input.inc || current['state'] !== 'alive' || behind) {
      return { ok: false, current: current ? parseNode(structuredClone(current), this.warn) : undefined };
    }
    Object.assign(current, structuredClone({
      counter: input.counter,
      taskCount: input.taskCount,
      capacity: input.capacity,
      types: input.types,
      watch: input.watch,
      id: input.id,
      member: keys.memberPartition,
      ring: ringKey(input.id),
      joinedAt: input.joinedAt,
    }));
    // The load is stored only while it differs from the task count (NodeItem.load).
    if (input.load === undefined) delete current['load'];
    else current['load'] = input.load;
    if (current['inbox'] === undefined) current['inbox'] = 0;
    if (current['neighbours'] === undefined) current['neighbours'] = 0;
    return { ok: true, node: parseNode(structuredClone(current), this.warn) };
  }

  async readNodes(ids: string[], options: { cluster?: boolean } = {}): Promise<NodesRead> {
    const nodes = new Map<string, NodeItem>();
    for (const id of new Set(ids)) {
      const node = this.node(id);
      if (node) nodes.set(id, node);
    }
    return { nodes, cluster: options.cluster === false ? undefined : parseCluster(this.get(keys.cluster)), unread: new Set(), rounds: new Map() };
  }

  private member(entry: { key: string }): MemberEntry | undefined {
    const raw = this.items.get(entry.key);
    const state = raw?.['state'];
    if (!raw || typeof raw['ring'] !== 'string' || (state !== 'alive' && state !== 'dead' && state !== 'left')) return undefined;
    return { id: String(raw['pk']).slice('node#'.length), state, ring: raw['ring'] };
  }

  async listMembers(): Promise<MemberEntry[]> {
    return this.ringIndex.map((e) => this.member(e)).filter((m): m is MemberEntry => m !== undefined);
  }

  async ringSuccessors(after: string, limit: number): Promise<MemberEntry[]> {
    const out: MemberEntry[] = [];
    for (let i = after === '' ? 0 : this.ringAt(after); i < this.ringIndex.length && out.length < limit; i++) {
      const entry = this.ringIndex[i]!;
      if (entry.ring <= after) continue;
      const member = this.member(entry);
      if (member) out.push(member);
    }
    return out;
  }

  async ringPredecessors(before: string, limit: number): Promise<MemberEntry[]> {
    const out: MemberEntry[] = [];
    for (let i = this.ringAt(before) - 1; i >= 0 && out.length < limit; i--) {
      const member = this.member(this.ringIndex[i]!);
      if (member) out.push(member);
    }
    return out;
  }

  async declareDead(id: string, observed: { inc: number; counter: number }, by: string): Promise<boolean> {
    return this.mutate(keys.node(id), (current) => {
      if (!current || current['inc'] !== observed.inc || current['counter'] !== observed.counter || current['state'] !== 'alive') return false;
      current['state'] = 'dead';
      current['deadBy'] = by;
      return true;
    });
  }

  async setDraining(id: string, draining: boolean): Promise<DrainResult> {
    return this.mutate(keys.node(id), (current): DrainResult => {
      if (!current || current['state'] !== 'alive') return { ok: false, current: current ? parseNode(structuredClone(current), this.warn) : undefined };
      if (draining) current['draining'] = true;
      else delete current['draining'];
      return { ok: true, node: parseNode(structuredClone(current), this.warn) };
    });
  }

  async markLeaving(id: string, inc: number): Promise<boolean> {
    return this.mutate(keys.node(id), (current) => {
      if (!current || current['inc'] !== inc || current['state'] !== 'alive') return false;
      current['leaving'] = true;
      return true;
    });
  }

  async markLeft(id: string, inc: number): Promise<boolean> {
    return this.mutate(keys.node(id), (current) => {
      if (!current || current['inc'] !== inc || current['state'] !== 'alive') return false;
      current['state'] = 'left';
      return true;
    });
  }

  async removeNode(id: string, expected: { inc: number; state: NodeState }): Promise<boolean> {
    const current = this.get(keys.node(id));
    if (!current || current['inc'] !== expected.inc || current['state'] !== expected.state) return false;
    this.delete(keys.node(id));
    return true;
  }

  async peekInbox(id: string): Promise<number | undefined> {
    const inbox = this.get(keys.node(id))?.['inbox'];
    return typeof inbox === 'number' ? inbox : undefined;
  }

  async notify(id: string): Promise<Notified | undefined> {
    const current = this.get(keys.node(id));
    if (!current) return undefined;
    current['inbox'] = (typeof current['inbox'] === 'number' ? current['inbox'] : 0) + 1;
    return notified(current);
  }

  async notifyNeighbours(id: string): Promise<void> {
    const current = this.get(keys.node(id));
    if (current) current['neighbours'] = (typeof current['neighbours'] === 'number' ? current['neighbours'] : 0) + 1;
  }

  async bumpCluster(field: keyof ClusterItem): Promise<void> {
    const cluster = this.get(keys.cluster) ?? {};
    cluster[field] = (typeof cluster[field] === 'number' ? cluster[field] : 0) + 1;
    this.set(keys.cluster, cluster);
  }

  async createTask(task: NewTaskRecord, createdAt: string): Promise<'created' | 'exists'> {
    if (this.get(keys.task(task.id))) return 'exists';
    this.set(keys.task(task.id), structuredClone(newTaskRecord(task, createdAt)));
    return 'created';
  }

  async getTask(id: string): Promise<TaskItem | undefined> {
    return this.task(id);
  }

  async getTasks(ids: readonly string[]): Promise<Map<string, TaskItem>> {
    const tasks = new Map<string, TaskItem>();
    for (const id of ids) {
      const task = this.task(id);
      if (task) tasks.set(id, task);
    }
    return tasks;
  }

  private owns(raw: Raw | undefined, expected: TaskOwnership): raw is Raw {
    return (
      raw !== undefined &&
      raw['owner'] === (expected.owner ?? keys.freeOwner) &&
      raw['ownerInc'] === expected.ownerInc &&
      raw['token'] === expected.token &&
      raw['state'] === 'ready'
    );
  }

  async deleteTask(id: string, expected?: TaskOwnership): Promise<TaskItem | undefined> {
    const raw = this.get(keys.task(id));
    if (!raw || (expected && !this.owns(raw, expected))) return undefined;
    this.delete(keys.task(id));
    return parseTask(structuredClone(raw), this.warn) ?? (raw as unknown as TaskItem);
  }

  async listTasks(limit: number, cursor?: string): Promise<Page<TaskItem>> {
    const all = [...this.items.values()]
      .filter((raw) => String(raw['pk']).startsWith('task#'))
      .sort((a, b) => (String(a['pk']) < String(b['pk']) ? -1 : 1));
    const start = cursor ? all.findIndex((raw) => String(raw['pk']) > cursor) : 0;
    const slice = start < 0 ? [] : all.slice(start, start + limit);
    const items = slice.map((raw) => parseTask(structuredClone(raw), this.warn)).filter((t): t is TaskItem => t !== undefined);
    const last = slice[slice.length - 1];
    const more = start >= 0 && start + limit < all.length;
    return more && last ? { items, cursor: String(last['pk']) } : { items };
  }

  /** One owner's tasks in slot order, as the index returns them; `within` filters slots. */
  private byOwner(owner: string, limit = Number.POSITIVE_INFINITY, within: (slot: string) => boolean = () => true): TaskHead[] {
    const out: TaskHead[] = [];
    const matching = [...(this.ownerIndex.get(owner) ?? [])]
      .map((k) => this.items.get(k)!)
      .filter((raw) => typeof raw['slot'] === 'string' && within(raw['slot']))
      .sort((a, b) => (String(a['slot']) < String(b['slot']) ? -1 : 1));
    for (const raw of matching) {
      if (out.length >= limit) break;
      // Only what the index projects.
      const task = parseTaskHead(raw, this.warn);
      if (task) out.push(task);
    }
    return out;
  }

  async tasksOwnedBy(nodeId: string): Promise<TaskHead[]> {
    return this.byOwner(nodeId);
  }

  async unownedTasks(limit: number, range?: SlotRange): Promise<TaskHead[]> {
    if (!range) return this.byOwner(keys.freeOwner, limit);
    const { from, to } = range;
    if (from < to) return this.byOwner(keys.freeOwner, limit, (slot) => slot >= from && slot < to);
    // Round the end of the ring: the part from `from` first, then the part before `to`.
    const tail = this.byOwner(keys.freeOwner, limit, (slot) => slot >= from);
    return [...tail, ...this.byOwner(keys.freeOwner, limit - tail.length, (slot) => slot < to)];
  }

  async moveTask(id: string, from: TaskOwnership, to: { owner: string | null; ownerInc: number }): Promise<TaskItem | undefined> {
    return this.moveNow(id, from, to);
  }

  private moveNow(id: string, from: TaskOwnership, to: { owner: string | null; ownerInc: number }): TaskItem | undefined {
    return this.mutate(keys.task(id), (raw) => {
      if (!this.owns(raw, from)) return undefined;
      raw['owner'] = to.owner ?? keys.freeOwner;
      raw['ownerInc'] = to.ownerInc;
      raw['token'] = from.token + 1;
      raw['previousOwner'] = from.owner ?? keys.freeOwner;
      delete raw['releaseRequested'];
      return parseTask(structuredClone(raw), this.warn);
    });
  }

  async moveTasks(moves: ReadonlyArray<{ id: string; from: TaskOwnership }>, to: { owner: string; ownerInc: number }): Promise<boolean> {
    if (moves.length > maxBatchMove) throw new Error(`moveTasks takes at most ${maxBatchMove} tasks, got ${moves.length}`);
    if (new Set(moves.map((m) => m.id)).size !== moves.length) throw new Error('moveTasks: a task appears twice');
    // Checked in full before anything changes, and applied without yielding: atomic.
    if (!moves.every(({ id, from }) => this.owns(this.get(keys.task(id)), from))) return false;
    for (const { id, from } of moves) this.moveNow(id, from, to);
    return true;
  }

  async updateTask(id: string, expected: TaskOwnership, patch: TaskPatch): Promise<boolean> {
    return this.mutate(keys.task(id), (raw) => {
      if (!this.owns(raw, expected)) return false;
      for (const [field, value] of Object.entries(patch)) {
        if (value !== undefined) raw[field] = structuredClone(value);
      }
      const owner = ownerAttribute(expected.owner, patch.state ?? 'ready');
      if (owner === undefined) delete raw['owner'];
      return true;
    });
  }

  async updatePayload(id: string, expectedToken: number, update: { payload: unknown; itemBytes: number }): Promise<PayloadUpdateResult> {
    return this.mutate(keys.task(id), (raw): PayloadUpdateResult => {
      if (!raw || raw['token'] !== expectedToken || raw['state'] !== 'ready') return { ok: false, current: raw ? parseTask(structuredClone(raw), this.warn) : undefined };
      raw['payload'] = structuredClone(update.payload);
      raw['itemBytes'] = update.itemBytes;
      raw['token'] = expectedToken + 1;
      raw['attempts'] = 0;
      delete raw['error'];
      return { ok: true, task: parseTask(structuredClone(raw), this.warn) };
    });
  }

  async requestRelease(id: string): Promise<TaskItem | undefined> {
    const raw = this.get(keys.task(id));
    if (!raw || raw['state'] !== 'ready') return undefined;
    raw['releaseRequested'] = true;
    return parseTask(structuredClone(raw), this.warn);
  }
}

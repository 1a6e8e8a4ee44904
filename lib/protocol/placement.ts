import { hash53 } from './ring.js';

/**
 * Who gets which task: rendezvous choice, spreading tasks over live nodes by load, and how
 * many a node hands to a lighter neighbour. Pure functions of ids and loads, so every node
 * computes the same answers from the same figures.
 */

/** Rendezvous (highest random weight) choice of one id among candidates for a key. */
export function rendezvous(key: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const id of candidates) {
    const score = hash53(`${key}|${id}`);
    if (score > bestScore || (score === bestScore && best !== undefined && id < best)) {
      best = id;
      bestScore = score;
    }
  }
  return best;
}

export interface Candidate {
  id: string;
  inc: number;
  /** The weight of the tasks it holds (taskWeight), in the units of its capacity. */
  load: number;
  capacity: number;
  types: readonly string[];
  /** The labels it publishes (absent: none), matched against tasks' require and prefer. */
  labels?: Readonly<Record<string, string>>;
  /**
   * Runs an older application version than the newest present (see newestVersion): about to
   * be replaced, so it gets a task only if no up-to-date candidate can take it.
   */
  outdated?: boolean;
}

/** What placement needs to know of a node's application version: the version and when the node joined. */
export interface Generation {
  version?: string;
  joinedAt: string;
}

/**
 * The newest application version among these nodes: the one whose earliest join is latest
 * (nodes without a version count as one version of their own). In a deploy the new version's
 * first node joins after every node of the old one, and a restart or rejoin of an old node
 * does not make the old version new again while any other old node is still there. Unlike a
 * comparison of version strings, this needs no ordering of them (an image digest has none)
 * and it follows a rollback, whose nodes run the older number but joined last. Join times
 * are wall-clock ISO text; they only order preferences, never decide who may run a task, so
 * a skewed clock costs at most an extra move. Undefined if fewer than two versions are
 * present: then nothing is outdated.
 */
export function newestVersion(nodes: Iterable<Generation>): string | undefined {
  const firstJoin = new Map<string, string>();
  for (const node of nodes) {
    const version = node.version ?? '';
    const seen = firstJoin.get(version);
    if (seen === undefined || node.joinedAt < seen) firstJoin.set(version, node.joinedAt);
  }
  if (firstJoin.size < 2) return undefined;
  let newest: string | undefined;
  let newestJoin = '';
  for (const [version, joinedAt] of firstJoin) {
    if (newest === undefined || joinedAt > newestJoin || (joinedAt === newestJoin && version > newest)) {
      newest = version;
      newestJoin = joinedAt;
    }
  }
  return newest;
}

/** Whether a node runs an older version than `newest` (newestVersion of the nodes it was judged among). */
export function isOutdated(node: Pick<Generation, 'version'>, newest: string | undefined): boolean {
  return newest !== undefined && (node.version ?? '') !== newest;
}

export interface Placement<T> {
  /** Target node id -> the tasks it gets. */
  assigned: Map<string, T[]>;
  /** Tasks nobody can take (no room for their weight, or no node handles the type): they go back to the pool. */
  unplaced: T[];
}

/** What placement reads of a task: its id and type, and its priority, weight and label selectors if set. */
export interface Placeable {
  id: string;
  type: string;
  priority?: number;
  weight?: number;
  require?: Readonly<Record<string, string>>;
  prefer?: Readonly<Record<string, string>>;
}

/** Whether `labels` has every label of `selector` (an absent or empty selector: any labels do). */
export function hasLabels(labels: Readonly<Record<string, string>> | undefined, selector: Readonly<Record<string, string>> | undefined): boolean {
  if (selector === undefined) return true;
  for (const [key, value] of Object.entries(selector)) if (labels?.[key] !== value) return false;
  return true;
}

/** How many labels of a task's `prefer` a node has: placement and rebalancing favour more. */
export function preference(labels: Readonly<Record<string, string>> | undefined, prefer: Readonly<Record<string, string>> | undefined): number {
  if (prefer === undefined) return 0;
  let matched = 0;
  for (const [key, value] of Object.entries(prefer)) if (labels?.[key] === value) matched += 1;
  return matched;
}

/** Whether a node may run a task at all, load aside: it handles the type and has every required label. */
export function canRun(node: { types: readonly string[]; labels?: Readonly<Record<string, string>> }, task: Pick<Placeable, 'type' | 'require'>): boolean {
  return node.types.includes(task.type) && hasLabels(node.labels, task.require);
}

/**
 * Spreads tasks over candidates, least loaded first (relative to capacity, after the task's
 * weight is added), never past a node's capacity and only to nodes that handle the task's
 * type and have every label it requires. Among those, a node with more of the labels the task
 * prefers comes first (after the application version, below): a preference decides where a
 * task goes while such a node has room, never whether it goes. Loads and capacities are weights (a task weighs 1 unless given a weight), so with
 * every task of weight 1 they are task counts and the placement is the one of counts. An outdated candidate (an
 * older application version, about to be replaced) gets a task only if no up-to-date one can
 * take it, so that a deploy moves each task once. Ties go to the rendezvous favourite, so
 * equal nodes split a batch deterministically.
 *
 * Priorities (absent: 0) count only when capacity is short: the tasks are placed in the
 * order given, and only if some are left over are they placed again, higher priorities
 * first (equal ones in the order given). Then a task is left over only if every node that
 * runs its type was filled by tasks of at least its priority. With room for all, the
 * placement is the same as without priorities.
 */
export function placeTasks<T extends Placeable>(tasks: readonly T[], candidates: readonly Candidate[]): Placement<T> {
  const placement = placeInOrder(tasks, candidates);
  if (placement.unplaced.length === 0 || tasks.every((t) => (t.priority ?? 0) === (tasks[0]!.priority ?? 0))) return placement;
  return placeInOrder(byPriority(tasks), candidates);
}

/** Tasks with higher priorities first (absent: 0), equal priorities in the order given. */
export function byPriority<T extends { priority?: number }>(tasks: readonly T[]): T[] {
  return tasks
    .map((task, index) => ({ task, index }))
    .sort((a, b) => (b.task.priority ?? 0) - (a.task.priority ?? 0) || a.index - b.index)
    .map(({ task }) => task);
}

function placeInOrder<T extends Placeable>(tasks: readonly T[], candidates: readonly Candidate[]): Placement<T> {
  const load = new Map(candidates.map((c) => [c.id, c.load]));
  const assigned = new Map<string, T[]>();
  const unplaced: T[] = [];
  for (const task of tasks) {
    const weight = task.weight ?? 1;
    let best: Candidate | undefined;
    let bestOutdated = true;
    let bestPreference = 0;
    let bestKey = Number.POSITIVE_INFINITY;
    let bestTie = -1;
    for (const c of candidates) {
      const current = load.get(c.id)!;
      if (current + weight > c.capacity || !canRun(c, task)) continue;
      const outdated = c.outdated === true;
      const preferred = preference(c.labels, task.prefer);
      const key = (current + weight) / c.capacity;
      const tie = hash53(`${task.id}|${c.id}`);
      const better =
        best === undefined ||
        (outdated !== bestOutdated ? !outdated : preferred !== bestPreference ? preferred > bestPreference : key < bestKey || (key === bestKey && tie > bestTie));
      if (better) {
        best = c;
        bestOutdated = outdated;
        bestPreference = preferred;
        bestKey = key;
        bestTie = tie;
      }
    }
    if (!best) {
      unplaced.push(task);
      continue;
    }
    load.set(best.id, load.get(best.id)! + weight);
    const list = assigned.get(best.id) ?? [];
    list.push(task);
    assigned.set(best.id, list);
  }
  return { assigned, unplaced };
}

/**
 * How much weight (with tasks of weight 1: how many tasks) a node should hand to a lighter
 * successor in one period, `mine` and `theirs` being loads: half the gap,
 * split among the k predecessors that may push to the same successor at once (so together
 * they never overshoot), and at most `maxMoves`. A gap too small to split is closed one task
 * at a time by the immediate predecessor alone. Nothing moves unless the gap is at least 2,
 * which is what keeps a task from bouncing back and forth.
 */
export function rebalanceCount(
  mine: number,
  theirs: number,
  theirSpare: number,
  pushers: number,
  maxMoves: number,
  immediateSuccessor: boolean,
): number {
  const gap = mine - theirs;
  if (gap < 2) return 0;
  const share = Math.floor(gap / (2 * Math.max(1, pushers)));
  const count = share > 0 ? share : immediateSuccessor ? 1 : 0;
  return Math.max(0, Math.min(count, maxMoves, theirSpare));
}

/**
 * Which of `tasks` (in the order of preference given) a node hands to a lighter successor:
 * those that fit within `weight` (rebalanceCount's figure), at most `maxMoves` of them. With
 * every task of weight 1 that is the first `weight` of them. If none fits and the successor
 * is the immediate one, one task lighter than the gap that fits the successor's room: the
 * move narrows the gap (|gap - 2w| < gap), so a pair of nodes ends within one task's weight
 * of each other, and the task cannot come back the other way (that would need the new gap,
 * 2w - gap, to exceed w).
 */
export function rebalanceChoice<T extends { weight?: number }>(
  tasks: readonly T[],
  weight: number,
  maxMoves: number,
  gap: number,
  theirSpare: number,
  immediateSuccessor: boolean,
): T[] {
  const chosen: T[] = [];
  let total = 0;
  for (const task of tasks) {
    if (chosen.length >= maxMoves) break;
    const w = task.weight ?? 1;
    if (total + w > weight) continue;
    chosen.push(task);
    total += w;
  }
  if (chosen.length > 0 || !immediateSuccessor || maxMoves <= 0) return chosen;
  const single = tasks.find((task) => (task.weight ?? 1) < gap && (task.weight ?? 1) <= theirSpare);
  return single ? [single] : [];
}

/**
 * Why no node among `nodes` could ever take a task, loads aside: none runs its type, none has
 * the labels it requires, or its weight exceeds every capacity of those that do. Undefined if
 * some node could (given room). For operators (`keeper status`); placement itself just leaves
 * such a task unplaced.
 */
export function unplaceableReason(task: Placeable, nodes: ReadonlyArray<Pick<Candidate, 'capacity' | 'types' | 'labels'>>): string | undefined {
  const typed = nodes.filter((n) => n.types.includes(task.type));
  if (typed.length === 0) return `no live node runs type ${task.type}`;
  const running = typed.filter((n) => hasLabels(n.labels, task.require));
  if (running.length === 0) {
    const required = Object.entries(task.require ?? {});
    const needs = required.map(([k, v]) => `${k}=${v}`);
    const missing = required.filter(([k, v]) => !typed.some((n) => n.labels?.[k] === v)).map(([k, v]) => `${k}=${v}`);
    return missing.length > 0
      ? `needs ${missing.join(', ')}: no live node has it`
      : `needs ${needs.join(', ')}: no live node has them all`;
  }
  const weight = task.weight ?? 1;
  if (running.every((n) => weight > n.capacity)) return `weight ${weight} exceeds every node's capacity`;
  return undefined;
}

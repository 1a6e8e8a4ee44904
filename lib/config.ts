import { z } from 'zod';
import { labelsSchema, type Labels } from './labels.js';
import { ticksToDeclare, type PeerSettings } from './protocol/peer-settings.js';

/**
 * Settings of the protocol, validated once at the door. Every refusal names the settings
 * that conflict and says what to change, the way client-go's leader election does.
 *
 * Symbols used in comments and in the README's failover bound:
 *   P  periodMs          one heartbeat (counter increment) per P on the node's own clock
 *   K  staleTicks        a peer is stale when the cluster benchmark advanced K ticks past it
 *   f  driftBound        every clock runs between 1/f and f times real speed
 *   d  requestTimeoutMs  the longest heartbeat round trip that still counts
 *   c  handlerStopMs     how long task code may take to notice that its lease is gone
 *   F  fenceMs           the self-fencing window, measured from the *send* time of the last
 *                        successful heartbeat on the node's own monotonic clock
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const takeoverModes = ['balanced', 'detector'] as const;
/** Who gets a dead node's tasks: `balanced` spreads them over live nodes, `detector` gives them to the node that detected the failure. */
export type TakeoverMode = (typeof takeoverModes)[number];

const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
export const nodeIdSchema = z
  .string()
  .regex(nodeIdPattern, 'node id must be 1-100 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit');

const positiveMs = (name: string) => z.number({ error: `${name} must be a number` }).finite().positive(`${name} must be > 0`);

export const optionsSchema = z
  .object({
    nodeId: nodeIdSchema.optional(),
    appVersion: z
      .string({ error: 'appVersion must be text' })
      .regex(/^[\x21-\x7e]{1,256}$/, 'appVersion must be 1-256 visible ASCII characters (no spaces), such as "1.4.2" or an image reference')
      .optional(),
    labels: labelsSchema.optional(),
    periodMs: positiveMs('periodMs').default(1000),
    staleTicks: z.number().int('staleTicks must be a whole number').min(2, 'staleTicks must be at least 2').default(4),
    driftBound: z.number().finite().min(1, 'driftBound must be >= 1 (1.05 means clocks may run 5% fast or slow)').default(1.05),
    requestTimeoutMs: positiveMs('requestTimeoutMs').optional(),
    handlerStopMs: z.number().finite().min(0, 'handlerStopMs must be >= 0').optional(),
    fenceMs: positiveMs('fenceMs').optional(),
    capacity: z.number().int('capacity must be a whole number').min(0, 'capacity must be >= 0').default(1000),
    watchPeers: z.number().int('watchPeers must be a whole number').min(1, 'watchPeers must be at least 1').default(3),
    takeover: z.enum(takeoverModes, { error: `takeover must be one of: ${takeoverModes.join(', ')}` }).default('balanced'),
    resyncTicks: z.number().int().min(1, 'resyncTicks must be at least 1').default(30),
    inboxPollMs: positiveMs('inboxPollMs').optional(),
    doorbell: z.boolean({ error: 'doorbell must be true or false' }).default(true),
    doorbellPort: z.number().int('doorbellPort must be a whole number').min(0, 'doorbellPort must be 0 (any free port) to 65535').max(65_535, 'doorbellPort must be 0 (any free port) to 65535').default(0),
    doorbellHost: z.string().min(1, 'doorbellHost must not be empty').max(253, 'doorbellHost is too long').optional(),
    maxMovesPerTick: z.number().int().min(0, 'maxMovesPerTick must be >= 0').default(20),
    maxAttempts: z.number().int().min(1, 'maxAttempts must be at least 1').default(5),
    retryBaseMs: positiveMs('retryBaseMs').default(500),
    retryMaxMs: positiveMs('retryMaxMs').default(30_000),
    leaveTimeoutMs: z.number().finite().min(0, 'leaveTimeoutMs must be >= 0').default(20_000),
    moveWriteUnitsPerSecond: z.number({ error: 'moveWriteUnitsPerSecond must be a number' }).finite().min(0, 'moveWriteUnitsPerSecond must be >= 0 (0: no limit)').default(0),
    maxStartsPerSecond: z.number({ error: 'maxStartsPerSecond must be a number' }).finite().min(0, 'maxStartsPerSecond must be >= 0 (0: no limit)').default(0),
  })
  .strict();

/** The protocol settings a user may give; every one has a default (see the README's settings table). */
export type KeeperOptions = z.input<typeof optionsSchema>;

/** The settings after resolveConfig: every default filled in and the safety condition checked. */
export interface KeeperConfig {
  nodeId?: string;
  /**
   * The application version this node runs, published in its item: placement prefers the
   * nodes of the newest version present, so that a deploy moves each task once
   * (protocol/placement.ts, newestVersion). KEEPER_APP_VERSION; KeeperCluster sets it.
   */
  appVersion?: string;
  /**
   * Labels this node publishes in its item (`--label`, KEEPER_LABELS, on ECS the availability
   * zone as `zone`): a task that requires labels runs only on a node that has them all, one that
   * prefers them goes to such a node when it has room (protocol/placement.ts).
   */
  labels?: Labels;
  periodMs: number;
  staleTicks: number;
  driftBound: number;
  requestTimeoutMs: number;
  handlerStopMs: number;
  fenceMs: number;
  capacity: number;
  watchPeers: number;
  takeover: TakeoverMode;
  resyncTicks: number;
  /** Poll this node's inbox this often between heartbeats (undefined: only with each heartbeat). */
  inboxPollMs?: number;
  /**
   * Ring a receiver over UDP when tasks are handed to it, so it starts them at once instead
   * of at its next heartbeat (see doorbell.ts); listening on doorbellPort (0: any free port),
   * reachable at doorbellHost (default: the first non-internal IPv4 address).
   */
  doorbell: boolean;
  doorbellPort: number;
  doorbellHost?: string;
  maxMovesPerTick: number;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /**
   * How long a graceful leave waits for handlers that ignore their signal. Every other task
   * is handed over as soon as its own run stops; a task whose handler is still running then
   * is left to failover (the node stops beating and never marks itself gone).
   */
  leaveTimeoutMs: number;
  /**
   * DynamoDB write units this node's task moves may spend per second (0: no limit), with a
   * burst of one second's worth. A takeover of thousands of tasks otherwise writes as fast as
   * the table answers, and on a table with few partitions (1,000 write units per partition per
   * second) that throttles the partitions that bystanders' heartbeats and outcomes write to.
   */
  moveWriteUnitsPerSecond: number;
  /**
   * Task runs this node starts per second at most (0: no limit), one per 1/maxStartsPerSecond
   * of its clock, highest priority first. A takeover hands a node hundreds of tasks at once;
   * their handlers would otherwise all open their connections (databases, brokers) in the same
   * moment. The tasks are held meanwhile (they count against capacity); failoverBoundMs adds
   * the wait.
   */
  maxStartsPerSecond: number;
}

/**
 * How much of a witness's progress one observation may count from before the moment it read
 * the watched node's value, in real time: the witness's heartbeat may have been in flight when
 * its counter was read (sent before, landed after), and the items of one batch read are read
 * in no particular order while the request is open. Each lasts at most one request timeout,
 * on a clock that may run 1/f slow.
 */
export function readWindowMs(c: Pick<KeeperConfig, 'requestTimeoutMs' | 'driftBound'>): number {
  return 2 * c.requestTimeoutMs * c.driftBound;
}

/** Real time after the send of a node's last heartbeat before any peer may declare it dead. */
export function earliestDeclarationMs(c: Pick<KeeperConfig, 'periodMs' | 'staleTicks' | 'driftBound' | 'requestTimeoutMs'>): number {
  // K benchmark ticks past the first sighting need K-1 full periods of the fastest clock,
  // counted from up to one read window before the sighting.
  return ((c.staleTicks - 1) * c.periodMs) / c.driftBound - readWindowMs(c);
}

/** Real time after the send of its last heartbeat by which a node has stopped all its work. */
export function latestSelfStopMs(c: Pick<KeeperConfig, 'fenceMs' | 'driftBound' | 'handlerStopMs'>): number {
  // F is measured on the node's own clock, which may run as slow as 1/f.
  return c.fenceMs * c.driftBound + c.handlerStopMs;
}

/**
 * Upper bound on the real time from a crash until some node has declared the crashed node
 * dead and its tasks (none) run elsewhere, in a cluster whose nodes run the given settings
 * (failoverBoundMs with tasks = 0, for every observer, witness, suspect and receiver the
 * settings allow): d of the suspect, one slow period of the observer until it sees the last
 * value, the witness's ticks to declare plus one of phase, and one slow period of the
 * slowest receiver. For one set of settings this is failoverBoundMs(c, 0, indexLagMs).
 */
export function mixedFailoverBoundMs(settings: readonly PeerSettings[], indexLagMs = 0): number {
  const f = Math.max(...settings.map((s) => s.driftBound));
  const slowest = Math.max(...settings.map((s) => s.periodMs));
  let worst = 0;
  for (const suspect of settings) {
    for (const observer of settings) {
      const followUp = indexLagMs <= 0 ? 0 : (followUpPasses.find((k) => (k * observer.periodMs) / f >= indexLagMs) ?? Number.POSITIVE_INFINITY);
      for (const witness of settings) {
        const benchmark = (ticksToDeclare(observer, witness, suspect) + 1) * witness.periodMs * f;
        const bound = suspect.requestTimeoutMs + observer.periodMs * f + benchmark + slowest * f + followUp * observer.periodMs * f;
        worst = Math.max(worst, bound);
      }
    }
  }
  return worst;
}

/** The fence window must outlast one period plus one slow round trip measured on a fast clock. */
function minFenceMs(c: Pick<KeeperConfig, 'periodMs' | 'requestTimeoutMs' | 'driftBound'>): number {
  return c.periodMs + c.requestTimeoutMs * c.driftBound;
}

function maxFenceMs(c: Pick<KeeperConfig, 'periodMs' | 'staleTicks' | 'driftBound' | 'handlerStopMs' | 'requestTimeoutMs'>): number {
  return (earliestDeclarationMs(c) - c.handlerStopMs) / c.driftBound;
}

/** Smallest staleTicks for which some fence window is both safe and tolerant of one slow heartbeat. */
export function minimumStaleTicks(c: Pick<KeeperConfig, 'periodMs' | 'requestTimeoutMs' | 'driftBound' | 'handlerStopMs'>): number {
  for (let k = 2; k < 10_000; k++) {
    if (maxFenceMs({ ...c, staleTicks: k }) > minFenceMs(c)) return k;
  }
  return Number.POSITIVE_INFINITY;
}

/** How many single task moves a node has in flight at once during a takeover or handover. */
export const moveConcurrency = 32;

/**
 * Batch moves (transactions) carry this many tasks at most, with this many tasks in flight in
 * all. A transaction's latency grows with its items wherever writes queue (measured on
 * DynamoDB Local: 25 tasks ~30 ms, 50 tasks in 4 parallel transactions ~125-200 ms), and it
 * must answer within the request timeout like any write, or its outcome becomes unknown.
 */
export const batchMoveSize = 25;
export const batchMoveLanes = 4;
export const batchMovesInFlight = batchMoveSize * batchMoveLanes;

/**
 * Upper bound on the real time from a crash until every task of the crashed node runs
 * elsewhere (given the drift bound), in milliseconds:
 *   d            the last heartbeat may take up to d to land;
 *   P*f          an observer sees that value at its next read, at most one slow period later;
 *   (K+1)*P*f    the benchmark needs K ticks of the slowest clocks, plus one period of phase;
 *   P*f          the new owner notices the handover at its next beat (balanced takeover),
 *                if the doorbell's ring was lost: rings are not relied on;
 *   ceil(n/100)*d moving the n tasks of the crashed node in transactions (25 tasks for one
 *                peer in each, 100 tasks in flight), each answered within d;
 *   ceil(n/32)*d then, if a transaction was refused or its outcome unknown, moving its tasks
 *                again one by one, 32 conditional writes at a time, each answered within d
 *                (both terms are 0 for n = 0: detection and pickup only);
 *   k*P*f        with an owner index that lags up to L behind the table (DynamoDB's global
 *                indexes are eventually consistent), the takeover's query can miss tasks that
 *                reached the crashed node within L of it; the declarer looks again 2 and 6
 *                passes later (Monitor.declareStale), so k is the first of those at least L
 *                of the slowest clock away (0 for L = 0; beyond six periods of lag only the
 *                tombstone sweep finds them, and there is no bound: Infinity).
 *   (3n-r)/r s*f with a write-unit budget of r per second for moves (moveWriteUnitsPerSecond):
 *                items of up to 1 KB, two units each in a transaction and one more if its
 *                batch is redone task by task, r of them at once.
 *   m/s*f        with a start rate of s per second (maxStartsPerSecond): a receiver starts the
 *                m = min(n, capacity) tasks one receiver can get one per 1/s of its clock
 *                (the first up to 1/s after its previous start), counted from a start queue
 *                that held none of higher or equal priority; a receiver still starting an
 *                earlier burst adds that burst's wait, and tasks of higher priority that
 *                reach it meanwhile start first.
 * Typical failovers are about (K + 1.5) * P; see the README for measured figures.
 */
export function failoverBoundMs(
  c: Pick<KeeperConfig, 'periodMs' | 'staleTicks' | 'driftBound' | 'requestTimeoutMs'> & Partial<Pick<KeeperConfig, 'moveWriteUnitsPerSecond' | 'maxStartsPerSecond' | 'capacity'>>,
  tasks = 0,
  indexLagMs = 0,
): number {
  const moves = Math.ceil(tasks / batchMovesInFlight) + Math.ceil(tasks / moveConcurrency);
  const followUp = indexLagMs <= 0 ? 0 : (followUpPasses.find((k) => (k * c.periodMs) / c.driftBound >= indexLagMs) ?? Number.POSITIVE_INFINITY);
  const rate = c.moveWriteUnitsPerSecond ?? 0;
  // Items of up to 1 KB: two units each in a transaction and one more if the batch is redone
  // task by task; the first second's worth at once.
  const paced = rate > 0 ? (Math.max(0, 3 * tasks - rate) / rate) * 1000 * c.driftBound : 0;
  const startRate = c.maxStartsPerSecond ?? 0;
  const starts = startRate > 0 ? ((Math.min(tasks, c.capacity ?? tasks) * 1000) / startRate) * c.driftBound : 0;
  return c.requestTimeoutMs + (c.staleTicks + 3) * c.periodMs * c.driftBound + moves * c.requestTimeoutMs + followUp * c.periodMs * c.driftBound + paced + starts;
}

/**
 * The owner index lag the health check allows for: DynamoDB documents that a change reaches a
 * global secondary index within a fraction of a second under normal conditions. A longer lag
 * is what the orphaned-tasks alarm is for.
 */
export const typicalIndexLagMs = 1000;

/** How long the health check watches before it calls a task orphaned: the failover bound at a typical index lag. */
export function healthWindowMs(c: Pick<KeeperConfig, 'periodMs' | 'staleTicks' | 'driftBound' | 'requestTimeoutMs'>): number {
  return failoverBoundMs(c, 0, typicalIndexLagMs);
}

/** How many passes after a declaration its declarer looks again at the dead node's tasks. */
export const followUpPasses = [2, 6] as const;

function formatIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid settings';
  if (issue.code === 'unrecognized_keys') return `unknown setting ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  const path = issue.path.join('.');
  return issue.message.startsWith(path) || !path ? issue.message : `${path}: ${issue.message}`;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Validates options, fills in defaults and derives the fence window. Throws ConfigError. */
export function resolveConfig(options: KeeperOptions = {}): KeeperConfig {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) throw new ConfigError(formatIssue(parsed.error));
  const o = parsed.data;
  const requestTimeoutMs = o.requestTimeoutMs ?? Math.min(o.periodMs * 0.2, 2000);
  const handlerStopMs = o.handlerStopMs ?? o.periodMs * 0.1;
  const base = { ...o, requestTimeoutMs, handlerStopMs };

  if (requestTimeoutMs >= o.periodMs) {
    throw new ConfigError(
      `requestTimeoutMs (${requestTimeoutMs}) must be shorter than periodMs (${o.periodMs}): a hung heartbeat must give up before the next one is due`,
    );
  }
  if (o.inboxPollMs !== undefined && o.inboxPollMs >= o.periodMs) {
    throw new ConfigError(`inboxPollMs (${o.inboxPollMs}) must be shorter than periodMs (${o.periodMs}); every heartbeat already reads the inbox`);
  }
  const lo = minFenceMs(base);
  const hi = maxFenceMs(base);
  if (o.fenceMs === undefined && !(hi > lo)) {
    throw new ConfigError(
      `staleTicks ${o.staleTicks} is too small for driftBound ${o.driftBound} at periodMs ${o.periodMs}: ` +
        `no self-fencing window is both safe and longer than one period plus a slow heartbeat; use staleTicks >= ${minimumStaleTicks(base)}`,
    );
  }
  const fenceMs = o.fenceMs ?? round((lo + hi) / 2);
  if (!(fenceMs > lo)) {
    throw new ConfigError(
      `fenceMs (${fenceMs}) must exceed periodMs + requestTimeoutMs x driftBound (${round(lo)}): otherwise one slow heartbeat would stop every task`,
    );
  }
  const config: KeeperConfig = { ...base, fenceMs };
  if (!(latestSelfStopMs(config) < earliestDeclarationMs(config))) {
    throw new ConfigError(
      `fenceMs (${fenceMs}) is unsafe: a node may stop its tasks only ${round(latestSelfStopMs(config))} ms after its last heartbeat ` +
        `(fenceMs x driftBound + handlerStopMs), but peers may declare it dead after ${round(earliestDeclarationMs(config))} ms ` +
        `((staleTicks - 1) x periodMs / driftBound - 2 x requestTimeoutMs x driftBound); lower fenceMs below ${round(hi)} or raise staleTicks`,
    );
  }
  return config;
}

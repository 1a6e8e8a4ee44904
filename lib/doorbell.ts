import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { z } from 'zod';

/**
 * A nudge from a node that has just handed tasks to this one: "your inbox moved to `inbox`,
 * these are the tasks". It changes nothing by itself. The table stays the only authority:
 * the receiver reads the named tasks with a consistent read and runs only those the table
 * says are its own. A lost, late, forged or repeated ring therefore costs at most a read;
 * the inbox counter, read with every heartbeat, still tells of every handover within a period.
 */
export interface Ring {
  /** The node the ring is for: a ring that reaches another process (a reused port) is ignored. */
  node: string;
  /** The receiver's inbox value after the mover's notification: what this ring stands for. */
  inbox: number;
  /** The tasks that notification covers; absent if they did not fit in one datagram. */
  tasks?: string[];
}

/** How handovers are rung. The worker's default is UDP; the simulator injects its own. */
export interface Doorbell {
  /** Starts listening. Returns the address peers ring ("host:port"), or undefined if it cannot listen. */
  open(onRing: (ring: Ring) => void): Promise<string | undefined>;
  /** Fire and forget: a ring may be lost, and nothing waits for it. */
  ring(address: string, ring: Ring): void;
  close(): Promise<void>;
}

export interface UdpDoorbellOptions {
  /** Port to listen on; 0 picks a free one (the address is published in the node item). */
  port?: number;
  /** Host peers should ring; default: this machine's first non-internal IPv4 address. */
  host?: string;
  /** Reports a socket that could not open or failed; the worker then runs on heartbeats alone. */
  warn?: (message: string) => void;
}

/**
 * One UDP datagram per ring, kept under a VPC's 9,001-byte MTU so that it is never
 * fragmented; a ring whose task list does not fit goes without it (the receiver then reads
 * its whole task list, as after a heartbeat).
 */
export const maxRingBytes = 8192;

const ringSchema = z
  .object({
    v: z.literal(1),
    node: z.string().min(1).max(100),
    inbox: z.number().int().nonnegative(),
    tasks: z.array(z.string().min(1).max(256)).max(1000).optional(),
  })
  .strict();

export function encodeRing(ring: Ring): Buffer {
  const full = Buffer.from(JSON.stringify({ v: 1, ...ring }));
  if (full.length <= maxRingBytes || ring.tasks === undefined) return full;
  return Buffer.from(JSON.stringify({ v: 1, node: ring.node, inbox: ring.inbox }));
}

/** The ring in a datagram, or undefined for anything else (datagrams come from anyone). */
export function decodeRing(data: Buffer): Ring | undefined {
  if (data.length > maxRingBytes) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = ringSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const { node, inbox, tasks } = parsed.data;
  return tasks === undefined ? { node, inbox } : { node, inbox, tasks };
}

/** "host:port" split, or undefined if it is not one. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const at = address.lastIndexOf(':');
  if (at <= 0) return undefined;
  const port = Number(address.slice(at + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) return undefined;
  return { host: address.slice(0, at), port };
}

/** The address peers on other machines can reach this one at, as well as can be guessed. */
export function defaultHost(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    // Link-local addresses (169.254.0.0/16, such as ECS's metadata network) reach no peer.
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.')) return a.address;
  }
  return '127.0.0.1';
}

/**
 * The task's own address on ECS with awsvpc networking (every Fargate task; EC2 tasks in that
 * mode), from the task metadata endpoint v4: there the first interface of the container can
 * be another one, such as a bridge. Undefined off ECS, in other network modes, or if the
 * endpoint does not answer within a second.
 */
export async function ecsTaskAddress(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const uri = env['ECS_CONTAINER_METADATA_URI_V4'];
  if (!uri) return undefined;
  try {
    const reply = await fetch(uri, { signal: AbortSignal.timeout(1000) });
    if (!reply.ok) return undefined;
    const metadata = (await reply.json()) as { Networks?: Array<{ NetworkMode?: string; IPv4Addresses?: string[] }> };
    const address = metadata.Networks?.find((n) => n.NetworkMode === 'awsvpc')?.IPv4Addresses?.[0];
    return typeof address === 'string' && isIP(address) === 4 ? address : undefined;
  } catch {
    return undefined;
  }
}

export class UdpDoorbell implements Doorbell {
  private socket: Socket | undefined;

  constructor(private readonly options: UdpDoorbellOptions = {}) {}

  async open(onRing: (ring: Ring) => void): Promise<string | undefined> {
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    const warn = this.options.warn ?? (() => {});
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(this.options.port ?? 0, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      socket.close();
      warn(`doorbell: cannot listen on UDP port ${this.options.port ?? 0} (${(error as Error).message}); handovers will be noticed at the next heartbeat`);
      return undefined;
    }
    socket.on('error', (error) => warn(`doorbell: ${error.message}`));
    socket.on('message', (data) => {
      const ring = decodeRing(data);
      if (ring) onRing(ring);
    });
    // A worker's doorbell must never keep its process alive on its own.
    socket.unref();
    this.socket = socket;
    return `${this.options.host ?? defaultHost()}:${socket.address().port}`;
  }

  ring(address: string, ring: Ring): void {
    const to = parseAddress(address);
    if (!this.socket || !to) return;
    this.socket.send(encodeRing(ring), to.port, to.host, () => {});
  }

  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

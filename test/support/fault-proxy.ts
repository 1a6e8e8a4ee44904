import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CloudModel, errorBody, type CloudSettings } from './cloud-model.js';

/**
 * An HTTP proxy in front of DynamoDB Local that injects the faults a worker meets on a real
 * network: a partition (requests vanish, nothing answers), delay, throttling and 5xx
 * answers, and writes that are applied but whose reply never arrives.
 *
 * It runs in the test process or the fault harness, one per worker, so that one worker can
 * be cut off while the rest of the cluster carries on. With `cloud()`, it also behaves the
 * way Amazon DynamoDB does and DynamoDB Local does not (cloud-model.ts).
 */
export type Fault = 'throttle' | 'error500' | 'drop-reply';

export interface FaultRates {
  throttle?: number;
  error500?: number;
  /** Share of requests forwarded and applied whose reply is then dropped. */
  dropReply?: number;
  /** Extra latency in ms for every request. */
  delayMs?: number;
}

export interface ProxyStats {
  requests: number;
  blackholed: number;
  throttled: number;
  errors500: number;
  droppedReplies: number;
  held: number;
}

export class FaultProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private blackholed = false;
  private queued: Array<{ fault: Fault; operation?: string; match?: (body: string) => boolean }> = [];
  rates: FaultRates = {};
  /**
   * Requests this matches are held for `ms` before they are forwarded: the client times out
   * first, and the write lands later anyway (a request the client gave up on is not cancelled).
   */
  hold: { match: (operation: string, body: string) => boolean; ms: number } | undefined;
  readonly stats: ProxyStats = { requests: 0, blackholed: 0, throttled: 0, errors500: 0, droppedReplies: 0, held: 0 };
  port = 0;
  private cloudModel: CloudModel | undefined;

  constructor(
    private readonly upstream: string,
    private readonly random: () => number = Math.random,
  ) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : port;
    return this.endpoint;
  }

  /** Cuts the worker off: from now on requests get no answer at all, and open connections hang. */
  partition(): void {
    this.blackholed = true;
  }

  /** Ends a partition; connections that were left hanging are reset, as a real network would after a timeout. */
  heal(): void {
    this.blackholed = false;
    for (const socket of this.sockets) socket.destroy();
  }

  /** Behaves like Amazon DynamoDB from now on (settings may be changed later through the returned model). */
  cloud(settings: CloudSettings): CloudModel {
    this.cloudModel = new CloudModel(settings, this.random);
    return this.cloudModel;
  }

  /** Behaves like the Amazon DynamoDB `model` stands for (one model shared by the proxies of one table), or like DynamoDB Local again. */
  useCloud(model: CloudModel | undefined): void {
    this.cloudModel = model;
  }

  /** Applies `fault` to the next request (of `operation`, e.g. 'UpdateItem', if given, and whose body `match`es, if given). */
  inject(fault: Fault, operation?: string, match?: (body: string) => boolean): void {
    this.queued.push({ fault, ...(operation ? { operation } : {}), ...(match ? { match } : {}) });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private pickFault(operation: string, body: string): Fault | undefined {
    const index = this.queued.findIndex((q) => (!q.operation || q.operation === operation) && (!q.match || q.match(body)));
    if (index >= 0) return this.queued.splice(index, 1)[0]!.fault;
    const r = this.random();
    const { throttle = 0, error500 = 0, dropReply = 0 } = this.rates;
    if (r < throttle) return 'throttle';
    if (r < throttle + error500) return 'error500';
    if (r < throttle + error500 + dropReply) return 'drop-reply';
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests += 1;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (this.blackholed) {
      this.stats.blackholed += 1;
      return; // never answer; the client's own timeout must fire
    }
    const operation = String(req.headers['x-amz-target'] ?? '').split('.').pop() ?? '';
    const sent = Buffer.concat(chunks).toString();
    const fault = this.pickFault(operation, sent);
    const delay = (this.rates.delayMs ?? 0) + (this.cloudModel?.latency() ?? 0);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (this.hold?.match(operation, sent)) {
      this.stats.held += 1;
      await new Promise((resolve) => setTimeout(resolve, this.hold!.ms));
    }
    if (fault === 'throttle') {
      this.stats.throttled += 1;
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' }).end(errorBody('ThrottlingException', 'Rate of requests exceeds the allowed throughput (injected).'));
      return;
    }
    if (fault === 'error500') {
      this.stats.errors500 += 1;
      res.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' }).end(errorBody('InternalServerError', 'Internal server error (injected).'));
      return;
    }
    const verdict = this.cloudModel?.judge(operation, sent) ?? { body: sent };
    if ('reply' in verdict) {
      res.writeHead(verdict.reply.status, { 'content-type': 'application/x-amz-json-1.0' }).end(verdict.reply.body);
      return;
    }
    const upstream = new URL(this.upstream);
    const headers = { ...req.headers, 'content-length': String(Buffer.byteLength(verdict.body)) };
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (answer) => {
      const body: Buffer[] = [];
      answer.on('data', (c: Buffer) => body.push(c));
      answer.on('end', () => {
        if (fault === 'drop-reply' || this.blackholed) {
          // The write was applied; the caller never learns it.
          this.stats.droppedReplies += 1;
          verdict.dropped?.();
          req.socket.destroy();
          return;
        }
        let reply = Buffer.concat(body);
        const replyHeaders = { ...answer.headers };
        if (verdict.after && answer.statusCode === 200) {
          reply = Buffer.from(verdict.after(reply.toString()));
          // The SDK checks the body against DynamoDB's CRC32 header, which no longer matches.
          delete replyHeaders['x-amz-crc32'];
          replyHeaders['content-length'] = String(reply.length);
        }
        res.writeHead(answer.statusCode ?? 502, replyHeaders).end(reply);
      });
    });
    forward.on('error', () => req.socket.destroy());
    forward.end(verdict.body);
  }
}

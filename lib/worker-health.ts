import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A worker's own health, for the orchestrator that runs it (ECS's container health check, a
 * Kubernetes exec probe): healthy while the node has joined the cluster and holds a valid
 * lease. It tells ECS when a new worker may count as running, so that a rolling deployment
 * stops an old worker only once its replacement has joined, and it makes ECS replace a
 * worker whose lease keeps running out.
 *
 * The worker answers on a localhost-only HTTP port (KEEPER_HEALTH_PORT), and `keeper health`
 * (or the bare `node -e` check of `healthCheckCommand`) asks it. A port rather than a status
 * file: KeeperCluster runs workers on a read-only root filesystem as a non-root user, where a
 * file would need a writable volume whose ownership depends on the user's image. Nothing can
 * go stale either way: the answer is worked out when asked, from the lease on the monotonic
 * clock (which lapses a fence window after the last heartbeat that landed, even if no timer
 * fires), and a process that hangs (a blocked event loop, SIGSTOP) does not answer at all,
 * which the asking side counts as unhealthy once its timeout passes.
 */

/** What a worker says about itself: the verdict and one line for a person (and for ECS's health check output). */
export interface HealthReport {
  healthy: boolean;
  line: string;
}

/** The parts of a Worker its health is judged from (a Worker satisfies it). */
export interface HealthSource {
  readonly id: string;
  snapshot(): { inc: number; phase: string; draining: boolean };
  leaseValid(): boolean;
}

/** The verdict: joined (running) and a valid lease. Draining is healthy: it is an operator's choice, not a fault. */
export function workerHealth(worker: HealthSource): HealthReport {
  const { inc, phase, draining } = worker.snapshot();
  const node = `node ${worker.id}`;
  if (phase === 'new' || phase === 'joining') return { healthy: false, line: `unhealthy: ${node} has not joined the cluster yet` };
  if (phase === 'leaving') return { healthy: false, line: `unhealthy: ${node} is leaving the cluster` };
  if (phase !== 'running') return { healthy: false, line: `unhealthy: ${node} has stopped` };
  if (!worker.leaseValid()) {
    return { healthy: false, line: `unhealthy: ${node} (incarnation ${inc}) has no valid lease: its heartbeats are not landing, or it was declared dead and is rejoining` };
  }
  return { healthy: true, line: `healthy: ${node} (incarnation ${inc}) has joined and holds a valid lease${draining ? '; it is draining' : ''}` };
}

/** The endpoint a worker serves its health on. */
export interface HealthEndpoint {
  /** The port it listens on (the one asked for, or the one picked for port 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `workerHealth(worker)` on 127.0.0.1:`port` (0: any free port): 200 when healthy, 503
 * when not, with the line as text/plain. Only this host can ask; the answer names the node and
 * its incarnation, nothing more, and changes nothing. The server does not keep the process alive.
 */
export async function serveHealth(worker: HealthSource, options: { port: number; host?: string }): Promise<HealthEndpoint> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\n');
      return;
    }
    const { healthy, line } = workerHealth(worker);
    res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' }).end(`${line}\n`);
  });
  // A health check is one small request; nothing else should hold a socket open here.
  server.maxConnections = 16;
  server.headersTimeout = 2000;
  server.requestTimeout = 2000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** How long `keeper health` waits for the worker's answer by default: well inside ECS's 5 s health check timeout, node's start-up included. */
export const healthTimeoutMs = 2000;

/** Asks a worker's health endpoint (what `keeper health` does). No answer within `timeoutMs` is unhealthy. */
export function checkHealth(options: { port: number; host?: string; timeoutMs?: number }): Promise<HealthReport> {
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.timeoutMs ?? healthTimeoutMs;
  return new Promise((resolve) => {
    const done = (report: HealthReport) => {
      clearTimeout(timer);
      resolve(report);
    };
    // One deadline for the whole exchange, not per socket event: a worker that accepts the
    // connection but never answers (its event loop blocked) must still count as unhealthy.
    const timer = setTimeout(() => {
      req.destroy();
      done({ healthy: false, line: `unhealthy: no answer from the worker on ${host}:${options.port} within ${timeoutMs} ms (its event loop is blocked, or the process is stopped)` });
    }, timeoutMs);
    const req = request({ host, port: options.port, path: '/health', method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => done({ healthy: res.statusCode === 200, line: body.trim().split('\n')[0] || `unhealthy: HTTP ${res.statusCode}` }));
      res.on('error', () => done({ healthy: false, line: `unhealthy: the answer from ${host}:${options.port} broke off` }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ECONNREFUSED' ? 'nothing listens there (the worker has not started, or has exited)' : error.message;
      done({ healthy: false, line: `unhealthy: no worker answers on ${host}:${options.port}: ${why}` });
    });
    req.end();
  });
}

/**
 * The container health check for ECS: `node -e` with a few lines that do what `keeper health`
 * does (GET the endpoint, print its line, exit 0 when healthy, else 1), so that it needs only
 * the `node` every worker image has, wherever the image installed keeper, and no shell or curl.
 */
export function healthCheckCommand(port: number, timeoutMs = healthTimeoutMs): string[] {
  const script = [
    `const r=require('http').get({host:'127.0.0.1',port:${port},path:'/health',timeout:${timeoutMs}},(s)=>{let b='';s.setEncoding('utf8');`,
    `s.on('data',(c)=>b+=c);s.on('end',()=>{console.log(b.trim());process.exit(s.statusCode===200?0:1)})});`,
    `r.on('timeout',()=>{console.log('unhealthy: no answer from the worker within ${timeoutMs} ms');process.exit(1)});`,
    `r.on('error',(e)=>{console.log('unhealthy: no worker answers on port ${port}: '+e.message);process.exit(1)})`,
  ].join('');
  return ['CMD', 'node', '-e', script];
}

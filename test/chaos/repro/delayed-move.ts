/**
 * Reproduction of chaos finding 1 (docs/chaos-findings.md): a rebalance move whose request
 * times out on the client but is applied by the server later. Node A re-reads the task,
 * still sees itself as owner (the write has not landed yet), takes the task back and runs
 * it; then the write lands, B gets the task with the next token and runs it too.
 *
 *   npx tsx test/chaos/repro/delayed-move.ts     (exit code 1 while the defect is present)
 *
 * A proxy in front of A holds every UpdateItem that hands a task to B for 600 ms before
 * forwarding it; A's request timeout is 100 ms. Real DynamoDB can do the same: a request
 * whose client gave up is not thereby cancelled.
 */
import { createServer, request } from 'node:http';
import { startLocalDb } from '../../../lib/local-db.js';
import { createDynamoClient, documentClient } from '../../../lib/store/client.js';
import { DynamoStore } from '../../../lib/store/dynamo-store.js';
import { ensureTable } from '../../../lib/store/table.js';
import { Worker } from '../../../lib/worker.js';
import { watchRunners } from './runner-watch.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
const db = await startLocalDb();
const table = 'repro-delayed-move';
const admin = createDynamoClient({ endpoint: db.endpoint, requestTimeoutMs: 5000 });
await ensureTable(admin, table);
const plain = new DynamoStore({ client: documentClient(admin), table });
for (let i = 0; i < 10; i++) await plain.createTask({ id: `t${i}`, type: 'demo', payload: null }, 'now');

let held = 0;
const proxy = createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  const text = body.toString();
  const handsToB = String(req.headers['x-amz-target'] ?? '').endsWith('UpdateItem') && text.includes('":toOwner":{"S":"B"}');
  if (handsToB) {
    held += 1;
    await new Promise((r) => setTimeout(r, 600));
  }
  const up = new URL(db.endpoint);
  const forward = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    const out: Buffer[] = [];
    answer.on('data', (c: Buffer) => out.push(c));
    answer.on('end', () => {
      if (!res.destroyed) res.writeHead(answer.statusCode ?? 502, answer.headers).end(Buffer.concat(out));
    });
  });
  forward.on('error', () => req.socket.destroy());
  forward.end(body);
});
await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;

const { handler, doubles: violations } = watchRunners();
const storeVia = (endpoint: string) => new DynamoStore({ client: documentClient(createDynamoClient({ endpoint, requestTimeoutMs: 100 })), table, requestTimeoutMs: 100 });
const a = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'A', periodMs: 500, store: storeVia(proxyUrl) }).handle('demo', handler('A'));
await a.start();
await new Promise((r) => setTimeout(r, 2000)); // A claims all ten tasks
const b = new Worker({ doorbellHost: '127.0.0.1', nodeId: 'B', periodMs: 500, store: storeVia(db.endpoint) }).handle('demo', handler('B'));
await b.start(); // A now rebalances towards B
await new Promise((r) => setTimeout(r, 8000));
process.stdout.write(`moves to B held back: ${held}\nA runs ${a.runningTasks().join(' ')}\nB runs ${b.runningTasks().join(' ')}\n`);
process.stdout.write(violations.size === 0 ? 'no task ran on two nodes\n' : `${violations.size} double runs, e.g.\n  ${[...violations].slice(0, 5).join('\n  ')}\n`);
await a.kill();
await b.kill();
proxy.close();
admin.destroy();
await db.stop();
process.exit(violations.size === 0 ? 0 : 1);

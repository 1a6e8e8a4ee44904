import { createSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeRing, encodeRing, maxRingBytes, parseAddress, UdpDoorbell, type Ring } from '../lib/doorbell.js';
import { waitFor } from './support/cluster.js';

let bells: UdpDoorbell[] = [];

afterEach(async () => {
  await Promise.all(bells.map((b) => b.close()));
  bells = [];
});

async function listening(onRing: (ring: Ring) => void, port = 0): Promise<{ bell: UdpDoorbell; address: string | undefined; warnings: string[] }> {
  const warnings: string[] = [];
  const bell = new UdpDoorbell({ host: '127.0.0.1', port, warn: (m) => warnings.push(m) });
  bells.push(bell);
  return { bell, address: await bell.open(onRing), warnings };
}

describe('doorbell', () => {
  it('carries a ring from one node to another over UDP on 127.0.0.1', async () => {
    const got: Ring[] = [];
    const receiver = await listening((ring) => got.push(ring));
    const sender = await listening(() => {});
    expect(receiver.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const ring = { node: 'b', inbox: 7, tasks: ['t-1', 't-2'] };
    sender.bell.ring(receiver.address!, ring);
    await waitFor('the ring', () => got.length === 1, 2000, 5);
    expect(got).toEqual([ring]);
  });

  it('ignores datagrams that are not rings, whoever sends them', async () => {
    const got: Ring[] = [];
    const receiver = await listening((ring) => got.push(ring));
    const { port } = parseAddress(receiver.address!)!;
    const raw = createSocket('udp4');
    const junk = ['not json', '{"v":2,"node":"b","inbox":1}', '{"v":1,"node":"b","inbox":-1}', '{"v":1,"node":"b","inbox":1,"extra":true}', '{"v":1,"node":"b","inbox":1,"tasks":[""]}'];
    for (const text of [...junk, '{"v":1,"node":"b","inbox":3}']) await new Promise((resolve) => raw.send(text, port, '127.0.0.1', resolve));
    raw.close();
    await waitFor('the one valid ring', () => got.length > 0, 2000, 5);
    expect(got).toEqual([{ node: 'b', inbox: 3 }]);
  });

  it('sends a ring whose task list would not fit one datagram without the list', () => {
    const tasks = Array.from({ length: 100 }, (_, i) => `${'x'.repeat(100)}-${i}`);
    const data = encodeRing({ node: 'b', inbox: 9, tasks });
    expect(data.length).toBeLessThanOrEqual(maxRingBytes);
    expect(decodeRing(data)).toEqual({ node: 'b', inbox: 9 });
    const small = encodeRing({ node: 'b', inbox: 9, tasks: tasks.slice(0, 3) });
    expect(decodeRing(small)).toEqual({ node: 'b', inbox: 9, tasks: tasks.slice(0, 3) });
  });

  it('warns and runs without a doorbell when its port is taken', async () => {
    const first = await listening(() => {});
    const { port } = parseAddress(first.address!)!;
    const second = await listening(() => {}, port);
    expect(second.address).toBeUndefined();
    expect(second.warnings.join()).toMatch(new RegExp(`cannot listen on UDP port ${port}.*next heartbeat`));
    second.bell.ring(first.address!, { node: 'b', inbox: 1 }); // a no-op, not a throw
  });

  it('parses only host:port addresses', () => {
    expect(parseAddress('10.1.2.3:7000')).toEqual({ host: '10.1.2.3', port: 7000 });
    for (const bad of ['10.1.2.3', ':7000', '10.1.2.3:0', '10.1.2.3:70000', 'host:x']) expect(parseAddress(bad)).toBeUndefined();
  });
});

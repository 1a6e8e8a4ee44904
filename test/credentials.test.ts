import { describe, expect, it } from 'vitest';
import { createDynamoClient, documentClient } from '../lib/store/client.js';
import { CredentialCache, CredentialsUnavailableError, type Credentials } from '../lib/store/credentials.js';
import { DynamoStore } from '../lib/store/dynamo-store.js';
import { AmbiguousWriteError, StoreUnavailableError } from '../lib/store/store.js';
import { freshTable } from './support/dynamo.js';
import { SimClock, VirtualTime } from './support/sim.js';

/**
 * Temporary credentials renewed ahead of expiry, off the request path (lib/store/credentials.ts):
 * a heartbeat never waits on the metadata endpoint while the credentials in hand still work.
 * Virtual time; the source stands for the SDK's chain (an ECS task role lasts hours).
 */
const minute = 60_000;
const hour = 60 * minute;

function setup(lifetimeMs = 6 * hour) {
  const time = new VirtualTime();
  const clock = new SimClock(time);
  const epoch = 1_800_000_000_000; // wall clock at virtual time 0
  const wallNow = () => epoch + time.now;
  const calls: number[] = [];
  let next: 'ok' | 'fail' | 'hang' = 'ok';
  let issued = 0;
  const source = (options?: { forceRefresh?: boolean }): Promise<Credentials> => {
    expect(options?.forceRefresh).toBe(true); // the SDK chain's own cache must not answer
    calls.push(time.now);
    if (next === 'fail') return Promise.reject(new Error('metadata endpoint unreachable'));
    if (next === 'hang') return new Promise(() => {});
    issued += 1;
    return Promise.resolve({ accessKeyId: `key-${issued}`, secretAccessKey: 's', expiration: new Date(wallNow() + lifetimeMs) });
  };
  const cache = new CredentialCache(source, { waitMs: 200, clock, wallNow });
  return { time, cache, calls, set: (mode: typeof next) => (next = mode) };
}

/** Settles promise continuations (the cache's fetch runs on them). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('CredentialCache', () => {
  it('hands out the credentials in hand without asking the source again', async () => {
    const { cache, calls, time } = setup();
    expect((await cache.provider()).accessKeyId).toBe('key-1');
    await time.run(4 * hour);
    expect((await cache.provider()).accessKeyId).toBe('key-1');
    expect(calls).toEqual([0]);
    cache.stop();
  });

  it('fetches the next ones a quarter of an hour before expiry, in the background', async () => {
    const { cache, calls, time } = setup();
    await cache.provider();
    await time.run(6 * hour - 15 * minute - 1);
    expect(calls).toEqual([0]);
    await time.run(6 * hour - 15 * minute);
    await settle();
    expect(calls).toEqual([0, 6 * hour - 15 * minute]);
    expect((await cache.provider()).accessKeyId).toBe('key-2');
    cache.stop();
  });

  it('renews short-lived credentials halfway through their life', async () => {
    const { cache, calls, time } = setup(20 * minute);
    await cache.provider();
    await time.run(10 * minute);
    await settle();
    expect(calls).toEqual([0, 10 * minute]);
    cache.stop();
  });

  it('keeps the working credentials through a failed refresh and tries again every half minute', async () => {
    const { cache, calls, time, set } = setup();
    await cache.provider();
    set('fail');
    await time.run(6 * hour - 15 * minute);
    await settle();
    expect((await cache.provider()).accessKeyId).toBe('key-1');
    set('ok');
    await time.run(6 * hour - 14.5 * minute);
    await settle();
    expect(calls).toEqual([0, 6 * hour - 15 * minute, 6 * hour - 14.5 * minute]);
    expect((await cache.provider()).accessKeyId).toBe('key-2');
    cache.stop();
  });

  it('fails a request within the wait, not later, when the credentials expired and the source hangs', async () => {
    const { cache, time, set } = setup();
    await cache.provider();
    set('hang');
    await time.run(6 * hour + 1);
    let outcome: unknown;
    cache.provider().then(
      () => (outcome = 'resolved'),
      (error: unknown) => (outcome = error),
    );
    await time.run(6 * hour + 1 + 199);
    await settle();
    expect(outcome).toBeUndefined();
    await time.run(6 * hour + 1 + 200);
    await settle();
    expect(outcome).toBeInstanceOf(CredentialsUnavailableError);
    cache.stop();
  });

  it('stops renewing once stopped', async () => {
    const { cache, calls, time } = setup();
    await cache.provider();
    cache.stop();
    await time.run(12 * hour);
    expect(calls).toEqual([0]);
  });
});

describe('a request without credentials', () => {
  it('is unavailable, not ambiguous: it never left (DynamoDB Local)', async () => {
    const t = await freshTable('creds');
    const client = createDynamoClient({
      endpoint: t.endpoint,
      requestTimeoutMs: 1000,
      credentials: () => Promise.reject(new CredentialsUnavailableError('no AWS credentials within 200 ms (still fetching)')),
    });
    const store = new DynamoStore({ client: documentClient(client), table: t.table, requestTimeoutMs: 1000, retry: { attempts: 2, baseMs: 1, capMs: 2 } });
    try {
      const outcome = await store.createTask({ id: 'job', type: 'demo', payload: null }, 'now').then(
        () => 'written',
        (error: unknown) => error,
      );
      expect(outcome).toBeInstanceOf(StoreUnavailableError);
      expect(outcome).not.toBeInstanceOf(AmbiguousWriteError);
      expect(await t.store().getTask('job')).toBeUndefined();
    } finally {
      client.destroy();
      await t.drop().catch(() => {});
    }
  });
});

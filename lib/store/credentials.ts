import { systemClock, type Clock, type Timer } from '../clock.js';

/** AWS credentials as the SDK's providers resolve them. */
export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  /** When they stop working (wall clock); none for long-term keys. */
  readonly expiration?: Date;
}

/** Where credentials come from: the SDK's default chain, or any provider of the SDK's shape. */
export type CredentialSource = (options?: { forceRefresh?: boolean }) => Promise<Credentials>;

/** Options of {@link CredentialCache}. */
export interface CredentialCacheOptions {
  /** Fetch new credentials this long before the current ones expire. */
  refreshAheadMs?: number;
  /** After a failed refresh, try again this much later (while the current ones still work). */
  retryMs?: number;
  /** The longest a request waits when the credentials in hand have expired: it then fails, like a timeout. */
  waitMs: number;
  /** Timers; expiry is judged on `wallNow`, since AWS states it as a date. */
  clock?: Clock;
  wallNow?: () => number;
}

/** Credentials that cannot be had within the wait: the request fails as if it had timed out. */
export class CredentialsUnavailableError extends Error {
  override name = 'CredentialsUnavailableError';
}

export const credentialCacheDefaults = { refreshAheadMs: 15 * 60_000, retryMs: 30_000 } as const;

/**
 * Temporary credentials (an ECS task role, an instance profile, web identity) renewed ahead of
 * their expiry, off the request path. Without it the SDK fetches them inside a request, outside
 * that request's timeout: a slow metadata endpoint would then hold a heartbeat for seconds.
 * Here a request takes the credentials in hand without waiting, while a timer fetches the next
 * ones a quarter of an hour before these run out, trying again every half minute if it fails;
 * only a request that finds them expired waits, and no longer than `waitMs`. One cache serves
 * both of a node's clients (clients.ts), so the metadata endpoint is asked once, not twice.
 */
export class CredentialCache {
  private current: Credentials | undefined;
  private fetching: Promise<Credentials> | undefined;
  private timer: Timer | undefined;
  private stopped = false;
  private readonly refreshAheadMs: number;
  private readonly retryMs: number;
  private readonly clock: Clock;
  private readonly wallNow: () => number;

  constructor(
    private readonly source: CredentialSource,
    private readonly options: CredentialCacheOptions,
  ) {
    this.refreshAheadMs = options.refreshAheadMs ?? credentialCacheDefaults.refreshAheadMs;
    this.retryMs = options.retryMs ?? credentialCacheDefaults.retryMs;
    this.clock = options.clock ?? systemClock;
    this.wallNow = options.wallNow ?? Date.now;
  }

  /** The provider to give the SDK clients. */
  readonly provider = async (): Promise<Credentials> => {
    const current = this.current;
    if (current && !this.expired(current)) return current;
    // The first fetch, as the node starts, waits as long as the source takes (the SDK's
    // providers have timeouts of their own): nothing runs yet that a wait could hold up.
    return current ? this.waitFor(this.fetch()) : this.fetch();
  };

  /** Stops the refresh timer: the clients are closed. */
  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private expired(credentials: Credentials): boolean {
    return credentials.expiration !== undefined && credentials.expiration.getTime() <= this.wallNow();
  }

  private waitFor(fetching: Promise<Credentials>): Promise<Credentials> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(this.options.waitMs, () =>
        reject(new CredentialsUnavailableError(`no AWS credentials within ${this.options.waitMs} ms (still fetching)`)),
      );
      fetching.then(
        (credentials) => {
          timer.cancel();
          resolve(credentials);
        },
        (error: unknown) => {
          timer.cancel();
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /** One fetch at a time; it always goes to the source (its own cache would hand back the old ones). */
  private fetch(): Promise<Credentials> {
    this.fetching ??= this.source({ forceRefresh: true })
      .then((credentials) => {
        this.current = credentials;
        this.schedule(this.refreshDelay(credentials));
        return credentials;
      })
      .catch((error: unknown) => {
        // Keep what works; try again soon while it still does.
        if (this.current && !this.expired(this.current)) this.schedule(this.retryMs);
        throw error;
      })
      .finally(() => {
        this.fetching = undefined;
      });
    return this.fetching;
  }

  /** When to fetch the next ones: `refreshAheadMs` before expiry, or halfway for short-lived ones. */
  private refreshDelay(credentials: Credentials): number | undefined {
    if (credentials.expiration === undefined) return undefined; // long-term keys never expire
    const left = credentials.expiration.getTime() - this.wallNow();
    return Math.max(1000, left > 2 * this.refreshAheadMs ? left - this.refreshAheadMs : left / 2);
  }

  private schedule(delayMs: number | undefined): void {
    this.timer?.cancel();
    if (this.stopped || delayMs === undefined) return;
    this.timer = this.clock.setTimer(delayMs, () => void this.fetch().catch(() => {}));
  }
}

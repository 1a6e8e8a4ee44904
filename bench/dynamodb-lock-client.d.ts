// The parts of dynamodb-lock-client 0.7.3 (plain JavaScript, no types) that the baseline uses.
declare module 'dynamodb-lock-client' {
  import type { EventEmitter } from 'node:events';

  export interface Lock extends EventEmitter {
    readonly fencingToken: number;
    /** Timer of the next heartbeat (library internal, cleared when a crash is simulated). */
    heartbeatTimeout?: ReturnType<typeof setTimeout>;
    release(callback: (error?: Error) => void): void;
  }

  export interface FailOpenConfig {
    dynamodb: { get: Function; put: Function; delete: Function };
    lockTable: string;
    partitionKey: string;
    leaseDurationMs: number;
    heartbeatPeriodMs?: number;
    owner?: string;
    retryCount?: number;
    trustLocalTime?: boolean;
  }

  export class FailOpen {
    constructor(config: FailOpenConfig);
    acquireLock(id: string, callback: (error: (Error & { code?: string }) | undefined, lock?: Lock) => void): void;
  }

  const client: { FailOpen: typeof FailOpen };
  export default client;
}

import { limits } from './store/items.js';

/** Why `ctx.checkpoint` refused or could not confirm a state. */
export type CheckpointFailure =
  /** The state has no JSON form (a BigInt, a cycle, undefined, a function): nothing was written. */
  | 'not-json'
  /** The state's JSON is over `limits.checkpointBytes`: nothing was written. */
  | 'too-large'
  /** The table refused the write: the task is no longer this run's (moved, deleted, finished). The run's signal is aborted. */
  | 'refused'
  /** The store kept failing: the state may or may not be stored; the task is still this run's as far as it knows. */
  | 'unconfirmed';

/**
 * What `ctx.checkpoint(state)` rejects with. `reason` says what happened and so what to do:
 * fix the state (`not-json`, `too-large`), stop (`refused`: another owner has the task now),
 * or carry on and checkpoint again later (`unconfirmed`).
 */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    readonly reason: CheckpointFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The JSON text a checkpoint is stored as, or CheckpointError before anything is written.
 * JSON.stringify's rules apply (toJSON, nested undefined left out), so the next run sees
 * exactly what JSON.parse makes of the text.
 */
export function encodeCheckpoint(state: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(state);
  } catch (error) {
    throw new CheckpointError('not-json', `checkpoint state is not JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }
  if (json === undefined) throw new CheckpointError('not-json', `checkpoint state is not JSON-serialisable: JSON.stringify gives nothing for ${typeof state}`);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > limits.checkpointBytes) {
    throw new CheckpointError('too-large', `checkpoint state is ${bytes} bytes of JSON; the limit is ${limits.checkpointBytes}: keep a cursor or a reference, not the data`);
  }
  return json;
}

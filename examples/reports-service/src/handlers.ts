import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { TaskContext, TaskHandlers } from 'keeper';
import { DynamoCheckpoints, type Checkpoints } from './checkpoints.js';

/** An `ingest` task: follow one feed for as long as this worker owns the task. */
export interface IngestPayload {
  feed: string;
  /** How often to read the feed, in ms. */
  everyMs?: number;
}

/** A `summarise` task: a one-off report over some figures. */
export interface SummarisePayload {
  figures: number[];
}

export interface Summary {
  count: number;
  total: number;
  mean: number;
}

/** Our two task types, over the checkpoint store they write to. */
export function createHandlers(checkpoints: Checkpoints): TaskHandlers {
  return {
    // Long-running: runs until keeper revokes or moves the task (the signal aborts).
    ingest: async (ctx: TaskContext<IngestPayload>) => {
      const { feed, everyMs = 100 } = ctx.task.payload;
      let position = (await checkpoints.read(feed))?.position ?? 0;
      while (!ctx.signal.aborted) {
        await new Promise((resolve) => setTimeout(resolve, everyMs));
        position += 1; // "read" one more entry of the feed
        // Check the lease right before the side effect, and fence the write with the token.
        if (!ctx.isValid()) return;
        if (!(await checkpoints.write(feed, position, ctx.token))) return; // a newer owner has it
      }
    },
    // Finite: the returned value completes the task, which never runs again.
    summarise: {
      mode: 'finite',
      maxAttempts: 3,
      handler: (ctx: TaskContext<SummarisePayload>): Summary => {
        const { figures } = ctx.task.payload;
        if (!Array.isArray(figures) || figures.length === 0) throw new Error('summarise needs a non-empty "figures" array');
        const total = figures.reduce((sum, n) => sum + n, 0);
        return { count: figures.length, total, mean: total / figures.length };
      },
    },
  };
}

/**
 * The handlers as deployed: checkpoints in the table CHECKPOINT_TABLE names (the CDK app sets
 * it). Also usable as `keeper worker --handlers dist/src/handlers.js`.
 */
export default createHandlers(new DynamoCheckpoints(new DynamoDBClient({}), process.env['CHECKPOINT_TABLE'] ?? 'reports-checkpoints'));

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { runWorker } from 'keeper';
import { DynamoCheckpoints } from './checkpoints.js';
import { createHandlers } from './handlers.js';

// Everything else (table, period, metrics, SIGTERM) comes from the KEEPER_* environment
// that KeeperCluster sets.
const checkpointTable = process.env['CHECKPOINT_TABLE'];
if (!checkpointTable) {
  process.stderr.write('reports-service: set CHECKPOINT_TABLE to the name of the checkpoint table\n');
  process.exit(2);
}

await runWorker({ handlers: createHandlers(new DynamoCheckpoints(new DynamoDBClient({}), checkpointTable)) });

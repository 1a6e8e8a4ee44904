import { App, CfnOutput, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { KeeperCluster } from 'keeper/cdk';
import { fileURLToPath } from 'node:url';

/** The project root (the image's build context), wherever the compiled app runs from. */
const root = fileURLToPath(new URL('../..', import.meta.url));

const app = new App();
const stack = new Stack(app, 'ReportsService');

const keeper = new KeeperCluster(stack, 'Keeper', {
  // Our image runs dist/src/worker.js (runWorker). Alternatively, keeper's own command with
  // our handler module: handlerModule: '/app/dist/src/handlers.js'.
  workerImage: ecs.ContainerImage.fromAsset(root, { platform: Platform.LINUX_AMD64 }),
  minWorkers: 2,
  maxWorkers: 6,
  periodMs: 1000,
  alarmEmails: ['reports-oncall@example.com'],
});

// Our own resource: the ingester's checkpoints, written with the fencing token.
const checkpoints = new dynamodb.Table(stack, 'Checkpoints', {
  partitionKey: { name: 'feed', type: dynamodb.AttributeType.STRING },
  billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
  pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
  removalPolicy: RemovalPolicy.RETAIN,
});
checkpoints.grantReadWriteData(keeper.service.taskDefinition.taskRole);
keeper.service.taskDefinition.defaultContainer!.addEnvironment('CHECKPOINT_TABLE', checkpoints.tableName);

new CfnOutput(stack, 'TaskApiUrl', { value: keeper.apiUrl });
new CfnOutput(stack, 'CheckpointTable', { value: checkpoints.tableName });
app.synth();

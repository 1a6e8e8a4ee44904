import { CfnOutput, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import { KeeperCluster, type KeeperClusterProps } from '../lib/cdk/index.js';

/** The repository root: the build context of the demo worker image (the root Dockerfile). */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export interface KeeperStackProps extends StackProps, Partial<Omit<KeeperClusterProps, 'workerImage'>> {}

/**
 * The demo deployment: this repository's own worker (`keeper worker` with the built-in
 * "demo" handler), built from the Dockerfile at the root. At synth the image is only staged
 * into cdk.out; `cdk deploy` builds and pushes it.
 */
export class KeeperStack extends Stack {
  readonly keeper: KeeperCluster;

  constructor(scope: Construct, id: string, props: KeeperStackProps = {}) {
    super(scope, id, props);
    this.keeper = new KeeperCluster(this, 'Keeper', {
      minWorkers: 2,
      maxWorkers: 6,
      periodMs: 1000,
      removalPolicy: RemovalPolicy.RETAIN,
      ...props,
      workerImage: ecs.ContainerImage.fromAsset(repoRoot, { platform: Platform.LINUX_AMD64 }),
    });
    new CfnOutput(this, 'TableName', { value: this.keeper.table.tableName, description: 'The cluster table (KEEPER_TABLE)' });
    new CfnOutput(this, 'ApiUrl', { value: this.keeper.apiUrl, description: 'Task API base URL; requests must be SigV4-signed (execute-api)' });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.keeper.alarmTopic.topicArn, description: 'Subscribe here to receive the alarms' });
    new CfnOutput(this, 'DashboardName', { value: this.keeper.monitoring.dashboard.dashboardName });
  }
}

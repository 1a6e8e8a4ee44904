import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** The functions the construct deploys; each is one prebuilt bundle (tools/bundle-functions.ts). */
export type FunctionBundle = 'task-api' | 'health';

/**
 * Where a function's prebuilt bundle lives: `dist/functions/<name>/index.mjs` of the package.
 * The path goes up to the package root and down into dist/, so it is the same whether this
 * module runs compiled (dist/cdk/lambda.js, as users get it) or from source with tsx
 * (lib/cdk/lambda.ts, in this repository's tests and `npm run synth`).
 *
 * Why prebuilt bundles rather than bundling at synth (NodejsFunction): a user's CDK app then
 * needs neither esbuild nor Docker nor this repository's TypeScript sources and lock file,
 * and what Lambda runs is byte for byte the bundle this package's tests ran.
 */
export function functionBundleDir(name: FunctionBundle): string {
  return fileURLToPath(new URL(`../../dist/functions/${name}`, import.meta.url));
}

/** Props of KeeperFunction. */
export interface KeeperFunctionProps {
  /** Which prebuilt bundle the function runs. */
  bundle: FunctionBundle;
  /** Exported handler in that bundle. */
  handler: string;
  description: string;
  environment: Record<string, string>;
  timeout: Duration;
  logRetention: logs.RetentionDays;
  removalPolicy: RemovalPolicy;
}

/**
 * One Lambda function of the deployment, from a bundle built with the package (ESM, the AWS
 * SDK included), with its own role and its own log group. The role starts empty but for
 * writing that log group: each caller grants the function exactly the table access it needs.
 */
export class KeeperFunction extends Construct {
  /** The Lambda function. */
  readonly function: lambda.Function;
  /** Its role: only its log group until a caller grants table access. */
  readonly role: iam.Role;
  /** Its log group. */
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: KeeperFunctionProps) {
    super(scope, id);
    const dir = functionBundleDir(props.bundle);
    if (!existsSync(`${dir}/index.mjs`)) {
      throw new Error(`KeeperCluster: the ${props.bundle} function bundle is missing at ${dir}; in a checkout of keeper, run \`npm run build\` first`);
    }
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: props.removalPolicy });
    // Not the AWSLambdaBasicExecutionRole managed policy: that one may write any log group.
    this.role = new iam.Role(this, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: `${props.description} (${id})` });
    this.logGroup.grantWrite(this.role);
    this.function = new lambda.Function(this, 'Function', {
      code: lambda.Code.fromAsset(dir),
      handler: `index.${props.handler}`,
      description: props.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      environment: { ...props.environment, NODE_OPTIONS: '--enable-source-maps' },
    });
  }
}


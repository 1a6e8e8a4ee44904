import { App, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lib/config.js';
import { KeeperStack, type KeeperStackProps } from './stack.js';

/**
 * `cdk synth` / `cdk deploy` entry (cdk.json runs it with tsx). Environment-agnostic: no
 * account or region is looked up, so synth needs no AWS credentials. Settings come from
 * context, e.g. `cdk deploy -c keeper:removalPolicy=destroy -c keeper:alarmEmail=ops@example.com`.
 */
const app = new App();

function context(name: string): string | undefined {
  const value: unknown = app.node.tryGetContext(`keeper:${name}`);
  return value === undefined || value === null || value === '' ? undefined : String(value);
}

function wholeNumber(name: string): number | undefined {
  const raw = context(name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`context keeper:${name} must be a whole number, got "${raw}"`);
  return Number(raw);
}

function removalPolicy(): RemovalPolicy {
  const raw = context('removalPolicy') ?? 'retain';
  if (raw === 'retain') return RemovalPolicy.RETAIN;
  if (raw === 'destroy') return RemovalPolicy.DESTROY;
  throw new ConfigError(`context keeper:removalPolicy must be "retain" or "destroy", got "${raw}"`);
}

const props: KeeperStackProps = {
  description: 'keeper: coordinated long-running workers on ECS with one DynamoDB table',
  removalPolicy: removalPolicy(),
};
const minWorkers = wholeNumber('minWorkers');
const maxWorkers = wholeNumber('maxWorkers');
const periodMs = wholeNumber('periodMs');
const email = context('alarmEmail');
if (minWorkers !== undefined) props.minWorkers = minWorkers;
if (maxWorkers !== undefined) props.maxWorkers = maxWorkers;
if (periodMs !== undefined) props.periodMs = periodMs;
if (email !== undefined) props.alarmEmails = [email];

new KeeperStack(app, context('stackName') ?? 'Keeper', props);
// Every synth runs the AWS Solutions checks; a finding that is not acknowledged fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();

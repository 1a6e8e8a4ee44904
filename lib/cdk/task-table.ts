import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { keys } from '../store/items.js';
import { tableSchema } from '../store/table.js';

/**
 * The cluster's one table, built from the same `tableSchema` that `keeper init` and the
 * tests use, so that a deployed table can never differ from the one the code was tested on.
 */
export function createTaskTable(scope: Construct, id: string, removalPolicy: RemovalPolicy): dynamodb.Table {
  const destroy = removalPolicy === RemovalPolicy.DESTROY;
  const table = new dynamodb.Table(scope, id, {
    partitionKey: { name: tableSchema.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: tableSchema.sortKey, type: dynamodb.AttributeType.STRING },
    // Heartbeats are steady but small; load follows the cluster's size, not a forecast.
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    // The table is the cluster's only state: it outlives the stack unless asked otherwise.
    deletionProtection: !destroy,
    removalPolicy,
  });
  for (const index of tableSchema.indexes) {
    table.addGlobalSecondaryIndex({
      indexName: index.name,
      partitionKey: { name: index.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: index.sortKey, type: dynamodb.AttributeType.STRING },
      ...(index.projection.type === 'INCLUDE'
        ? { projectionType: dynamodb.ProjectionType.INCLUDE, nonKeyAttributes: [...index.projection.attributes] }
        : { projectionType: dynamodb.ProjectionType.ALL }),
    });
  }
  return table;
}

type ItemAction = 'DescribeTable' | 'GetItem' | 'BatchGetItem' | 'PutItem' | 'UpdateItem' | 'DeleteItem' | 'Scan';
type IndexName = typeof keys.membersIndex | typeof keys.ownerIndex;

/** The DynamoDB calls one part of the deployment makes on the table, from which its IAM policy is written. */
export interface TableAccess {
  /** Calls on the table itself. */
  items: readonly ItemAction[];
  /** Indexes this caller queries. */
  queries: readonly IndexName[];
}

/**
 * What each part of the deployment does to the table: the DynamoStore calls behind its code
 * paths, and nothing more. test/infra.test.ts replays each part against DynamoDB Local and
 * checks that every call it makes is covered.
 */
export const tableAccess = {
  /**
   * Check the table's schema at start (runWorker, `keeper worker`), join, heartbeat, read and
   * declare peers, move and update tasks, leave, remove tombstones. Batch moves are
   * TransactWriteItems of Updates, which IAM authorises as UpdateItem.
   */
  worker: { items: ['DescribeTable', 'GetItem', 'BatchGetItem', 'PutItem', 'UpdateItem', 'DeleteItem'], queries: [keys.membersIndex, keys.ownerIndex] },
  /** TaskAdmin.add: conditional put, read back, bump the cluster's task counter. */
  createTask: { items: ['PutItem', 'GetItem', 'UpdateItem'], queries: [] },
  getTask: { items: ['GetItem'], queries: [] },
  /** TaskAdmin.list: a paginated scan. */
  listTasks: { items: ['Scan'], queries: [] },
  /** TaskAdmin.remove: conditional delete, then a notification to the owner's inbox. */
  deleteTask: { items: ['DeleteItem', 'UpdateItem'], queries: [] },
  /** TaskAdmin.update: read the task, compare-and-set its payload and token, then notify its owner or bump the cluster's task counter. */
  updateTask: { items: ['GetItem', 'UpdateItem'], queries: [] },
  /** TaskAdmin.release: read the task and its owner, then mark, notify or move. */
  releaseTask: { items: ['GetItem', 'UpdateItem'], queries: [] },
  /** TaskAdmin.drain and undrain: one conditional update of the node item. */
  drainNode: { items: ['UpdateItem'], queries: [] },
  /** TaskAdmin.status plus counter reads: membership, node items, a scan of tasks. */
  health: { items: ['GetItem', 'BatchGetItem', 'Scan'], queries: [keys.membersIndex] },
} as const satisfies Record<string, TableAccess>;

/**
 * Grants exactly `access` on this table: item calls on the table's ARN, queries on the named
 * indexes' ARNs. No wildcard resources, so a caller can touch no other table or index.
 */
export function grantTableAccess(table: dynamodb.Table, grantee: iam.IGrantable, access: TableAccess): void {
  if (access.items.length > 0) {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: access.items.map((a) => `dynamodb:${a}`), resources: [table.tableArn] }),
    );
  }
  if (access.queries.length > 0) {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: access.queries.map((index) => `${table.tableArn}/index/${index}`) }),
    );
  }
}

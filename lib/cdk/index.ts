/**
 * `keeper/cdk`: the `KeeperCluster` construct, which deploys a keeper cluster on AWS (the
 * table, workers on Fargate, the task API, the health check, alarms and a dashboard), and the
 * parts it is made of. Needs the peer dependencies `aws-cdk-lib` and `constructs`.
 *
 * @packageDocumentation
 */
export { KeeperCluster, doorbellPort, healthPort, workerHealthCheck, type KeeperClusterProps } from './keeper-cluster.js';
export { KeeperMonitoring, type AlarmSettings, type MonitoringProps } from './monitoring.js';
export { KeeperFunction, functionBundleDir, type FunctionBundle, type KeeperFunctionProps } from './lambda.js';
export { createTaskTable, grantTableAccess, tableAccess, type TableAccess } from './task-table.js';

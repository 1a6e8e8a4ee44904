/**
 * keeper: run singleton tasks on a cluster of long-running workers with automatic failover,
 * using one DynamoDB table and no central node.
 */
export { Worker, NodeIdInUseError, defaultNodeId, type WorkerOptions, type WorkerEvents } from './worker.js';
export type { TaskContext, TaskHandler, HandlerOptions, TaskMode } from './tasks.js';
export { TaskStoppedError } from './tasks.js';
export { CheckpointError, type CheckpointFailure } from './checkpoint.js';
export { withFencingToken, defaultFencingAttribute, type FencingOptions } from './fencing.js';
export {
  resolveConfig,
  ConfigError,
  failoverBoundMs,
  healthWindowMs,
  earliestDeclarationMs,
  latestSelfStopMs,
  minimumStaleTicks,
  type KeeperOptions,
  type KeeperConfig,
  type TakeoverMode,
} from './config.js';
export { systemClock, skewedClock, sleep, type Clock, type Timer } from './clock.js';
export { jsonLogger, silentLogger, type Logger } from './log.js';
export { TaskAdmin, InvalidInputError, PayloadTooLargeError, TaskConflictError, TaskNotFoundError, NodeNotFoundError, NodeConflictError, parseNewTask, unplaceableTasks, type Unplaceable, parsePayloadUpdate, type PayloadUpdate, type PayloadUpdateOutcome } from './admin.js';
export { DynamoStore, TableMissingError, InvalidCursorError, type DynamoStoreOptions, type RetryPolicy } from './store/dynamo-store.js';
export { MemoryStore } from './store/memory-store.js';
export { createDynamoClient, createNodeClients, documentClient, type ClientOptions, type NodeClients } from './store/client.js';
export { CredentialCache, CredentialsUnavailableError, type CredentialCacheOptions, type CredentialSource, type Credentials } from './store/credentials.js';
export { ensureTable, createTableInput, tableSchema } from './store/table.js';
export { keys, limits } from './store/items.js';
export type { Store, NodeItem, TaskItem, ClusterItem, WatchRecord, NodeState, TaskState, DrainResult, PayloadUpdateResult } from './store/store.js';
export { AmbiguousWriteError, StoreUnavailableError, taskPriority, taskWeight } from './store/store.js';
export { InvalidLabelError, parseLabel, parseLabels, parseLabelList, type Labels } from './labels.js';
export { attachMetrics, metricNames, metricsNamespace, type MetricsOptions, type DetachMetrics } from './metrics.js';
export { checkHandlers, registerHandlers, InvalidHandlersError, type TaskHandlers, type TaskHandlerEntry } from './task-handlers.js';
export { runWorker, runWorkerDefaults, type RunWorkerOptions } from './run-worker.js';
export { readWorkerEnvironment, workerEnvironment, EnvironmentError, type WorkerEnvironmentSettings } from './worker-environment.js';
export { workerHealth, serveHealth, checkHealth, healthCheckCommand, healthTimeoutMs, type HealthReport, type HealthEndpoint, type HealthSource } from './worker-health.js';
export { checkTable, tableDifferences, TableSchemaMismatchError } from './store/table.js';

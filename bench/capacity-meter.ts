import type { AttributeValue, ConsumedCapacity, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { itemSize, writeUnitsFor } from './item-size.js';

/**
 * Counts what a set of DynamoDB clients costs, from inside the SDK: one middleware per client
 * asks for `ReturnConsumedCapacity: 'TOTAL'` (table plus indexes) and adds up what comes back,
 * per operation. Both keeper and the lock-per-task baseline run through it, so both are counted
 * the same way.
 *
 * DynamoDB (and DynamoDB Local, checked by `probeCapacityReporting`) reports no consumed
 * capacity for a write whose condition failed, yet such a write is billed: write units for the
 * size of the item it was checked against, at least one. Those units are computed here from
 * the item returned with the failure (ReturnValuesOnConditionCheckFailure), or for a put
 * without it from the item that was sent, and kept apart as `computedWriteUnits`.
 */
export const readOperations = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);
export const writeOperations = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);

export interface OperationCount {
  /** The DynamoDB operation (GetItem, UpdateItem, ...). */
  operation: string;
  requests: number;
  /** Failed for any reason other than a failed condition (timeout, throttling, 5xx). */
  errors: number;
  conditionFailed: number;
  /** Units DynamoDB reported. */
  readUnits: number;
  writeUnits: number;
  /** Units of failed conditional writes, computed from item sizes. */
  computedWriteUnits: number;
}

export interface MeterReading {
  at: number;
  ops: Record<string, OperationCount>;
  /** Count of latencies recorded so far (an index into the meter's latency ring). */
  latencyMark: number;
}

export interface Totals {
  requests: number;
  readRequests: number;
  writeRequests: number;
  readUnits: number;
  writeUnits: number;
  /** Of writeUnits: units of failed conditional writes, computed from item sizes. */
  computedWriteUnits: number;
  errors: number;
  conditionFailed: number;
}

const emptyCount = (operation: string): OperationCount => ({ operation, requests: 0, errors: 0, conditionFailed: 0, readUnits: 0, writeUnits: 0, computedWriteUnits: 0 });
const latencyRing = 1 << 18;

function reportedUnits(consumed: ConsumedCapacity | ConsumedCapacity[] | undefined): number {
  if (!consumed) return 0;
  // BatchGetItem, BatchWriteItem and transactions answer with one entry per table.
  const list = Array.isArray(consumed) ? consumed : [consumed];
  return list.reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
}

function failedWriteUnits(operation: string, input: Record<string, unknown>, error: { Item?: Record<string, AttributeValue> }): number {
  if (error.Item) return writeUnitsFor(itemSize(error.Item));
  // The middleware runs before lib-dynamodb marshals the input, so a put's item is plain JS.
  if (operation === 'PutItem' && input['Item']) {
    return writeUnitsFor(itemSize(marshall(input['Item'] as Record<string, unknown>, { removeUndefinedValues: true, convertClassInstanceToMap: true })));
  }
  return 1;
}

/**
 * Names what a request is for (a heartbeat, a task move, a lock acquire), from its operation
 * and plain input; counts are kept per name. Each system under test brings its own.
 */
export type RequestLabeler = (operation: string, input: Record<string, unknown>) => string;

export class CapacityMeter {
  private readonly ops = new Map<string, OperationCount>();
  constructor(private readonly label: RequestLabeler = (operation) => operation) {}

  private readonly latencies = new Float64Array(latencyRing);
  private latencyCount = 0;
  /** Whether DynamoDB returned ConsumedCapacity, per operation (for the report's method note). */
  readonly reporting = new Map<string, { reported: number; missing: number }>();

  attach(client: DynamoDBClient): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const operation = String(context.commandName ?? 'unknown').replace(/Command$/, '');
        const metered = readOperations.has(operation) || writeOperations.has(operation);
        const input = args.input as Record<string, unknown>;
        const count = this.count(operation, this.label(operation, input));
        const started = performance.now();
        try {
          const result = await next(metered ? { ...args, input: { ...input, ReturnConsumedCapacity: 'TOTAL' } } : args);
          // Counted on completion, with its units, so a window never holds a request without them.
          count.requests += 1;
          this.recordLatency(performance.now() - started);
          if (metered) {
            const consumed = (result.output as { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] }).ConsumedCapacity;
            const seen = this.reporting.get(operation) ?? { reported: 0, missing: 0 };
            if (consumed === undefined) seen.missing += 1;
            else seen.reported += 1;
            this.reporting.set(operation, seen);
            const units = reportedUnits(consumed);
            if (readOperations.has(operation)) count.readUnits += units;
            else count.writeUnits += units;
          }
          return result;
        } catch (error) {
          count.requests += 1;
          this.recordLatency(performance.now() - started);
          const name = (error as { name?: string }).name;
          if (name === 'ConditionalCheckFailedException') {
            count.conditionFailed += 1;
            if (writeOperations.has(operation)) {
              const units = failedWriteUnits(operation, input, error as { Item?: Record<string, AttributeValue> });
              count.writeUnits += units;
              count.computedWriteUnits += units;
            }
          } else {
            count.errors += 1;
          }
          throw error;
        }
      },
      // Outermost, before lib-dynamodb marshals: sees the plain input and the final outcome.
      { step: 'initialize', priority: 'high', name: 'benchCapacityMeter' },
    );
  }

  private count(operation: string, label: string): OperationCount {
    let count = this.ops.get(label);
    if (!count) {
      count = emptyCount(operation);
      this.ops.set(label, count);
    }
    return count;
  }

  private recordLatency(ms: number): void {
    this.latencies[this.latencyCount % latencyRing] = ms;
    this.latencyCount += 1;
  }

  read(): MeterReading {
    const ops: Record<string, OperationCount> = {};
    for (const [op, count] of this.ops) ops[op] = { ...count };
    return { at: performance.now(), ops, latencyMark: this.latencyCount };
  }

  /** Latencies (ms) of requests that finished since `from`, as far as the ring still holds them. */
  latenciesSince(from: MeterReading): number[] {
    const start = Math.max(from.latencyMark, this.latencyCount - latencyRing);
    const out: number[] = [];
    for (let i = start; i < this.latencyCount; i++) out.push(this.latencies[i % latencyRing]!);
    return out;
  }
}

/** What happened between two readings of one meter. */
export function difference(later: MeterReading, earlier: MeterReading): Record<string, OperationCount> {
  const out: Record<string, OperationCount> = {};
  for (const [label, count] of Object.entries(later.ops)) {
    const before = earlier.ops[label] ?? emptyCount(count.operation);
    out[label] = {
      operation: count.operation,
      requests: count.requests - before.requests,
      errors: count.errors - before.errors,
      conditionFailed: count.conditionFailed - before.conditionFailed,
      readUnits: count.readUnits - before.readUnits,
      writeUnits: count.writeUnits - before.writeUnits,
      computedWriteUnits: count.computedWriteUnits - before.computedWriteUnits,
    };
  }
  return out;
}

/** Totals over the labels that `pick` selects (all by default). */
export function totals(ops: Record<string, OperationCount>, pick: (label: string) => boolean = () => true): Totals {
  const t: Totals = { requests: 0, readRequests: 0, writeRequests: 0, readUnits: 0, writeUnits: 0, computedWriteUnits: 0, errors: 0, conditionFailed: 0 };
  for (const [label, c] of Object.entries(ops)) {
    if (!pick(label)) continue;
    t.requests += c.requests;
    if (readOperations.has(c.operation)) t.readRequests += c.requests;
    if (writeOperations.has(c.operation)) t.writeRequests += c.requests;
    t.readUnits += c.readUnits;
    t.writeUnits += c.writeUnits;
    t.computedWriteUnits += c.computedWriteUnits;
    t.errors += c.errors;
    t.conditionFailed += c.conditionFailed;
  }
  return t;
}

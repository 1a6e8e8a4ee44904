import type { PutCommandInput, UpdateCommandInput } from '@aws-sdk/lib-dynamodb';

/** Options of {@link withFencingToken}. */
export interface FencingOptions {
  /**
   * The attribute of your item that holds the highest fencing token written to it (default
   * `fencingToken`). Tokens count the owner changes (and payload updates) of one task, so an item written by several
   * tasks needs one attribute per task.
   */
  attribute?: string;
}

/** The attribute {@link withFencingToken} uses unless told otherwise. */
export const defaultFencingAttribute = 'fencingToken';

// Placeholders of our own, so that the user's expressions keep theirs.
const namePlaceholder = '#keeperFencingToken';
const valuePlaceholder = ':keeperFencingToken';
const fenceCondition = `attribute_not_exists(${namePlaceholder}) OR ${namePlaceholder} <= ${valuePlaceholder}`;
// The SET clause's keyword, not a placeholder or name that contains the word (SET is reserved,
// so it can appear bare only as the keyword).
const setKeyword = /(^|[^#:\w])SET(?!\w)/i;

/**
 * Fences a write to your own DynamoDB table with a task's token: returns a copy of a
 * lib-dynamodb `PutCommand` or `UpdateCommand` input that succeeds only if the item has never
 * seen a higher token (`attribute_not_exists(token) OR token <= :token`, AND-ed with your own
 * condition), and stores the token in the item. A former owner that wakes up after a takeover
 * then fails with `ConditionalCheckFailedException` instead of overwriting the new owner's
 * work. Your names, values and condition are kept; the input is not changed.
 *
 * ```ts
 * await doc.send(new PutCommand(withFencingToken({ TableName: 'cursors', Item: { feed, position } }, ctx.token)));
 * ```
 */
export function withFencingToken<T extends PutCommandInput | UpdateCommandInput>(input: T, token: number, options: FencingOptions = {}): T {
  const attribute = options.attribute ?? defaultFencingAttribute;
  if (!Number.isSafeInteger(token) || token < 0) throw new TypeError(`withFencingToken: token must be a task's fencing token (ctx.token), a whole number >= 0; got ${String(token)}`);
  if (typeof attribute !== 'string' || attribute === '') throw new TypeError('withFencingToken: attribute must be a non-empty attribute name');
  const legacy = ['Expected', 'ConditionalOperator', 'AttributeUpdates'].filter((field) => (input as Record<string, unknown>)[field] !== undefined);
  if (legacy.length > 0) throw new TypeError(`withFencingToken: ${legacy.join(', ')} cannot be combined with expressions; write the condition as a ConditionExpression`);
  const names = { ...input.ExpressionAttributeNames };
  const values = { ...input.ExpressionAttributeValues };
  if (names[namePlaceholder] !== undefined || values[valuePlaceholder] !== undefined) {
    throw new TypeError(`withFencingToken: ${namePlaceholder} and ${valuePlaceholder} are its own placeholders; use other names in your expressions`);
  }
  names[namePlaceholder] = attribute;
  values[valuePlaceholder] = token;
  const fenced = {
    ...input,
    ConditionExpression: input.ConditionExpression ? `(${input.ConditionExpression}) AND (${fenceCondition})` : fenceCondition,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
  if ('Item' in input && input.Item !== undefined) {
    const stored = input.Item[attribute];
    if (stored !== undefined && stored !== token) throw new TypeError(`withFencingToken: the item's "${attribute}" is ${String(stored)}, not the token ${token}; leave it out, the token is stored for you`);
    return { ...fenced, Item: { ...input.Item, [attribute]: token } };
  }
  if ('Key' in input && input.Key !== undefined) {
    const set = `${namePlaceholder} = ${valuePlaceholder}`;
    const expression = (input as UpdateCommandInput).UpdateExpression?.trim() ?? '';
    // Clauses may come in any order: join the user's SET clause, or add one.
    const UpdateExpression = setKeyword.test(expression) ? expression.replace(setKeyword, `$1SET ${set},`) : `SET ${set}${expression ? ` ${expression}` : ''}`;
    return { ...fenced, UpdateExpression };
  }
  throw new TypeError('withFencingToken: input must be a PutCommand input (with Item) or an UpdateCommand input (with Key)');
}

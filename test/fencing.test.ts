import { CreateTableCommand, DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFencingToken } from '../lib/fencing.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/**
 * withFencingToken against a user's own table on DynamoDB Local: the write of a lower token
 * is refused, an equal or higher one goes through, and the user's own condition still holds.
 */
let t: TestTable;
let table: string;
beforeAll(async () => {
  t = await freshTable('fencing');
  table = `${t.table}-user`;
  await t.client.send(
    new CreateTableCommand({ TableName: table, BillingMode: 'PAY_PER_REQUEST', AttributeDefinitions: [{ AttributeName: 'feed', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'feed', KeyType: 'HASH' }] }),
  );
});
afterAll(async () => {
  await t.client.send(new DeleteTableCommand({ TableName: table })).catch(() => {});
  await t.drop();
});

const item = async (feed: string) => (await t.doc.send(new GetCommand({ TableName: table, Key: { feed }, ConsistentRead: true }))).Item;
const refused = (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ name: 'ConditionalCheckFailedException' });

describe('withFencingToken on DynamoDB Local', () => {
  it('PutCommand: refuses a lower token, accepts an equal or higher one, and stores it', async () => {
    const put = (position: number, token: number) => t.doc.send(new PutCommand(withFencingToken({ TableName: table, Item: { feed: 'put', position } }, token)));
    await put(10, 5);
    expect(await item('put')).toEqual({ feed: 'put', position: 10, fencingToken: 5 });
    await refused(put(99, 4));
    expect(await item('put')).toEqual({ feed: 'put', position: 10, fencingToken: 5 });
    await put(11, 5);
    await put(12, 6);
    expect(await item('put')).toEqual({ feed: 'put', position: 12, fencingToken: 6 });
  });

  it("UpdateCommand: joins the user's SET clause, names, values and condition", async () => {
    const input = (position: number, token: number): UpdateCommandInput =>
      withFencingToken(
        {
          TableName: table,
          Key: { feed: 'update' },
          UpdateExpression: 'ADD #n :one SET #pos = :pos',
          ConditionExpression: 'attribute_not_exists(#pos) OR #pos < :pos',
          ExpressionAttributeNames: { '#n': 'writes', '#pos': 'position' },
          ExpressionAttributeValues: { ':one': 1, ':pos': position },
        },
        token,
      );
    await t.doc.send(new UpdateCommand(input(10, 3)));
    expect(await item('update')).toEqual({ feed: 'update', position: 10, writes: 1, fencingToken: 3 });
    await refused(t.doc.send(new UpdateCommand(input(20, 2)))); // a lower token
    await refused(t.doc.send(new UpdateCommand(input(5, 3)))); // the user's own condition
    await t.doc.send(new UpdateCommand(input(20, 3)));
    await t.doc.send(new UpdateCommand(input(30, 9)));
    expect(await item('update')).toEqual({ feed: 'update', position: 30, writes: 3, fencingToken: 9 });
  });

  it('UpdateCommand without a SET clause, and a chosen attribute name', async () => {
    const add = (token: number) =>
      t.doc.send(
        new UpdateCommand(
          withFencingToken({ TableName: table, Key: { feed: 'add' }, UpdateExpression: 'ADD #n :one', ExpressionAttributeNames: { '#n': 'writes' }, ExpressionAttributeValues: { ':one': 1 } }, token, {
            attribute: 'ownerToken',
          }),
        ),
      );
    await add(4);
    await refused(add(1));
    await add(4);
    expect(await item('add')).toEqual({ feed: 'add', writes: 2, ownerToken: 4 });
  });
});

describe('withFencingToken input', () => {
  it("leaves the user's input as it was", () => {
    const input = { TableName: 'x', Key: { id: 'a' }, UpdateExpression: 'SET a = :a', ExpressionAttributeValues: { ':a': 1 } };
    const copy = structuredClone(input);
    const fenced = withFencingToken(input, 2);
    expect(input).toEqual(copy);
    expect(fenced).toMatchObject({
      UpdateExpression: 'SET #keeperFencingToken = :keeperFencingToken, a = :a',
      ConditionExpression: 'attribute_not_exists(#keeperFencingToken) OR #keeperFencingToken <= :keeperFencingToken',
      ExpressionAttributeNames: { '#keeperFencingToken': 'fencingToken' },
      ExpressionAttributeValues: { ':a': 1, ':keeperFencingToken': 2 },
    });
  });

  it.each([
    ['a negative token', () => withFencingToken({ TableName: 'x', Item: { id: 'a' } }, -1), /whole number >= 0/],
    ['a fractional token', () => withFencingToken({ TableName: 'x', Item: { id: 'a' } }, 1.5), /whole number >= 0/],
    ['an empty attribute name', () => withFencingToken({ TableName: 'x', Item: { id: 'a' } }, 1, { attribute: '' }), /non-empty attribute name/],
    ['its own placeholder taken', () => withFencingToken({ TableName: 'x', Item: { id: 'a' }, ExpressionAttributeValues: { ':keeperFencingToken': 1 } }, 1), /its own placeholders/],
    ['a legacy condition', () => withFencingToken({ TableName: 'x', Item: { id: 'a' }, Expected: { id: { Exists: false } } }, 1), /Expected cannot be combined with expressions/],
    ['another token in the item', () => withFencingToken({ TableName: 'x', Item: { id: 'a', fencingToken: 3 } }, 1), /leave it out/],
    ['neither Item nor Key', () => withFencingToken({ TableName: 'x' } as never, 1), /PutCommand input \(with Item\) or an UpdateCommand input \(with Key\)/],
  ])('refuses %s with a TypeError', (_what, call, message) => {
    expect(call).toThrow(TypeError);
    expect(call).toThrow(message);
  });
});

import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/**
 * DynamoDB's item size rules ("Item sizes and formats" in the developer guide), used only
 * where the service reports no consumed capacity: a failed conditional write, which still
 * consumes write units for the size of the item it was checked against (at least one).
 *
 *   name            UTF-8 bytes of every attribute name
 *   S / B           UTF-8 bytes / raw bytes
 *   N               1 byte per two significant digits, plus 1
 *   BOOL / NULL     1 byte
 *   L / M           3 bytes, plus 1 byte per element, plus the elements (and names, for M)
 *   SS / NS / BS    the sum of the members
 */
const utf8 = (text: string) => Buffer.byteLength(text, 'utf8');

function numberSize(text: string): number {
  const digits = text.replace(/^[-+]/, '').replace(/e.*$/i, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

function binarySize(value: Uint8Array | string): number {
  return typeof value === 'string' ? Buffer.from(value, 'base64').length : value.byteLength;
}

export function attributeSize(value: AttributeValue): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  if (value.B !== undefined) return binarySize(value.B);
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS !== undefined) return value.SS.reduce((sum, s) => sum + utf8(s), 0);
  if (value.NS !== undefined) return value.NS.reduce((sum, n) => sum + numberSize(n), 0);
  if (value.BS !== undefined) return value.BS.reduce((sum, b) => sum + binarySize(b), 0);
  if (value.L !== undefined) return 3 + value.L.reduce((sum, v) => sum + 1 + attributeSize(v), 0);
  if (value.M !== undefined) return 3 + Object.entries(value.M).reduce((sum, [k, v]) => sum + 1 + utf8(k) + attributeSize(v), 0);
  return 0;
}

export function itemSize(item: Record<string, AttributeValue>): number {
  return Object.entries(item).reduce((sum, [name, value]) => sum + utf8(name) + attributeSize(value), 0);
}

/** Write units for a write of an item this size: 1 per KB, rounded up, at least 1. */
export function writeUnitsFor(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 1024));
}

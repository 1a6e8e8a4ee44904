import { z } from 'zod';

/**
 * Node labels and the selectors tasks hold against them (issue 16, item 2). A node publishes
 * its labels (`--label zone=eu-west-1a`, KEEPER_LABELS, the ECS availability zone as `zone`);
 * a task may `require` labels (it runs only on a node that has every one of them) and `prefer`
 * them (placement and rebalancing choose such a node when one has room, but a preference is
 * never a reason to leave a task unowned). The syntax, its checks and the text forms are
 * written down once, here; matching is pure and lives with placement (protocol/placement.ts).
 */
export type Labels = Record<string, string>;

/**
 * A label or selector that is not `key=value` with a valid key and value; the message says
 * which and why. Bad input: status 400 (exit 2 on the CLI), nothing written.
 */
export class InvalidLabelError extends Error {
  override name = 'InvalidLabelError';
  readonly status = 400;
}

/** Most labels a node publishes, and most a task's require or prefer names. */
export const maxLabels = 16;

const keyMessage = 'a label key is 1-63 letters, digits and . _ / -, starting with a letter or digit';
const valueMessage = 'a label value is 1-128 letters, digits and . _ : / @ + -';

export const labelKeySchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, keyMessage);
export const labelValueSchema = z.string().regex(/^[A-Za-z0-9._:/@+-]{1,128}$/, valueMessage);

/** Labels, or a selector, as JSON carries them: `{ "zone": "eu-west-1a" }`. */
export const labelsSchema = z
  .record(z.string(), z.string({ error: valueMessage }), { error: 'labels must be an object of key: value text, such as {"zone": "eu-west-1a"}' })
  // Checked by hand rather than by the record's key and value schemas, so that the one line a
  // caller reads names the label at fault and what a label may be.
  .superRefine((labels, ctx) => {
    const entries = Object.entries(labels);
    if (entries.length > maxLabels) ctx.addIssue({ code: 'custom', message: `at most ${maxLabels} labels` });
    for (const [key, value] of entries) {
      if (!labelKeySchema.safeParse(key).success) ctx.addIssue({ code: 'custom', message: `"${key}": ${keyMessage}` });
      else if (!labelValueSchema.safeParse(value).success) ctx.addIssue({ code: 'custom', message: `${key}: ${valueMessage}` });
    }
  });

/** One `key=value`; `what` names where it came from (`--label`, KEEPER_LABELS, `--require`). */
export function parseLabel(text: string, what: string): [string, string] {
  const at = text.indexOf('=');
  if (at < 0) throw new InvalidLabelError(`${what}: "${text}" is not key=value (such as zone=eu-west-1a)`);
  const key = text.slice(0, at).trim();
  const value = text.slice(at + 1).trim();
  if (!labelKeySchema.safeParse(key).success) throw new InvalidLabelError(`${what}: "${text}": ${keyMessage}`);
  if (!labelValueSchema.safeParse(value).success) throw new InvalidLabelError(`${what}: "${text}": ${valueMessage}`);
  return [key, value];
}

/** Several `key=value`s as one set of labels; a key given twice with two values is refused. */
export function parseLabels(texts: readonly string[], what: string): Labels {
  const labels: Labels = {};
  for (const text of texts) {
    const [key, value] = parseLabel(text, what);
    if (labels[key] !== undefined && labels[key] !== value) throw new InvalidLabelError(`${what}: ${key} is given twice (${labels[key]} and ${value})`);
    labels[key] = value;
  }
  if (Object.keys(labels).length > maxLabels) throw new InvalidLabelError(`${what}: at most ${maxLabels} labels`);
  return labels;
}

/** `key=value,key=value` (KEEPER_LABELS); empty text is no labels. */
export function parseLabelList(text: string, what: string): Labels {
  const parts = text.split(',').map((part) => part.trim()).filter((part) => part !== '');
  return parseLabels(parts, what);
}

/** Labels as `key=value, key=value` text, in key order ('-' for none). */
export function formatLabels(labels: Labels | undefined): string {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

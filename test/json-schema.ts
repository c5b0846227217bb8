/**
 * A small JSON Schema (2020-12) validator for the subset zod's `z.toJSONSchema()` emits, to hold
 * real requests and answers to the OpenAPI document. A keyword it does not know is an error, never
 * ignored, so a constraint cannot pass unchecked; annotations (description, default, ...) are skipped.
 */

type Schema = Record<string, unknown> | boolean;

const ANNOTATIONS = new Set(['description', 'default', 'title', 'examples', '$schema', '$id']);
const KNOWN = new Set([
  '$ref',
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'anyOf',
  'oneOf',
  'allOf',
  'not',
]);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function hasType(v: unknown, t: string): boolean {
  if (t === 'integer') return Number.isInteger(v);
  if (t === 'number') return typeof v === 'number' && Number.isFinite(v);
  return typeOf(v) === t;
}

/**
 * The problems of `value` against `schema` (empty when valid), each as `path: what`. `$ref`s are
 * resolved in `root` (`#/components/schemas/X` and the like).
 */
export function validate(root: unknown, schema: Schema, value: unknown, path = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: no value is allowed here`];
  const out: string[] = [];
  const fail = (m: string) => out.push(`${path}: ${m}`);
  for (const k of Object.keys(schema))
    if (!KNOWN.has(k) && !ANNOTATIONS.has(k)) throw new Error(`${path}: unknown keyword ${k}`);
  const s = schema as Record<string, any>;
  if (s.$ref !== undefined) out.push(...validate(root, resolve(root, s.$ref), value, path));
  if (s.type !== undefined) {
    const types: string[] = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.some((t) => hasType(value, t))) fail(`expected ${types.join(' or ')}`);
  }
  if (s.enum !== undefined && !s.enum.includes(value)) fail(`not one of ${JSON.stringify(s.enum)}`);
  if ('const' in s && value !== s.const) fail(`expected ${JSON.stringify(s.const)}`);
  if (typeof value === 'string') {
    const length = [...value].length;
    if (s.minLength !== undefined && length < s.minLength) fail(`shorter than ${s.minLength}`);
    if (s.maxLength !== undefined && length > s.maxLength) fail(`longer than ${s.maxLength}`);
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(value))
      fail(`does not match ${s.pattern}`);
    if (s.format === 'date-time' && !Number.isFinite(Date.parse(value))) fail('not a date-time');
  }
  if (typeof value === 'number') {
    if (s.minimum !== undefined && value < s.minimum) fail(`below ${s.minimum}`);
    if (s.maximum !== undefined && value > s.maximum) fail(`above ${s.maximum}`);
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum)
      fail(`not above ${s.exclusiveMinimum}`);
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum)
      fail(`not below ${s.exclusiveMaximum}`);
  }
  if (Array.isArray(value)) {
    if (s.minItems !== undefined && value.length < s.minItems) fail(`fewer than ${s.minItems}`);
    if (s.maxItems !== undefined && value.length > s.maxItems) fail(`more than ${s.maxItems}`);
    if (s.items !== undefined)
      value.forEach((v, i) => out.push(...validate(root, s.items, v, `${path}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of (s.required ?? []) as string[]) if (!(r in obj)) fail(`${r} is required`);
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const [k, v] of Object.entries(obj)) {
      if (s.propertyNames !== undefined)
        out.push(...validate(root, s.propertyNames, k, `${path}.${k} (name)`));
      if (k in props) out.push(...validate(root, props[k]!, v, `${path}.${k}`));
      else if (s.additionalProperties !== undefined)
        out.push(...validate(root, s.additionalProperties, v, `${path}.${k}`));
    }
  }
  if (s.allOf !== undefined)
    for (const sub of s.allOf as Schema[]) out.push(...validate(root, sub, value, path));
  if (s.anyOf !== undefined && !(s.anyOf as Schema[]).some((x) => ok(root, x, value)))
    fail('matches none of anyOf');
  if (s.oneOf !== undefined && (s.oneOf as Schema[]).filter((x) => ok(root, x, value)).length !== 1)
    fail('does not match exactly one of oneOf');
  if (s.not !== undefined && ok(root, s.not, value)) fail('matches what `not` forbids');
  return out;
}

function ok(root: unknown, schema: Schema, value: unknown): boolean {
  return validate(root, schema, value).length === 0;
}

/** A local `$ref` (`#/a/b`) in `root`; throws when it leads nowhere. */
export function resolve(root: unknown, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`not a local $ref: ${ref}`);
  let at: any = root;
  for (const part of ref.slice(2).split('/')) {
    at = at?.[part.replaceAll('~1', '/').replaceAll('~0', '~')];
    if (at === undefined) throw new Error(`$ref ${ref} leads nowhere`);
  }
  return at as Schema;
}

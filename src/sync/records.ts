/**
 * The records a BPSYNC/1 payload carries, one JSON object per line, and the `vendor sign` input.
 * Parsed at the edge with zod, like every other input.
 */
import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import { formatPath, identifier, policySchema, timestamp } from '../schemas.ts';
import { StrictJsonError, parseStrictJson } from '../tokens/strict-json.ts';
import { rejected } from './format.ts';
import { termIsValid } from '../domain/entitlement-rules.ts';
import { QUOTA_NAME } from '../domain/quota-rules.ts';

/** Bundle-managed entitlement ids are chosen by the vendor: `ent_` then 1–100 of [A-Za-z0-9_-]. */
export const entitlementId = z
  .string()
  .regex(
    /^ent_[A-Za-z0-9_-]{1,100}$/,
    'must be an entitlement id: ent_ then 1 to 100 letters, digits, _ or -',
  );

const entitlementFields = {
  entitlement_id: entitlementId,
  tenant_id: identifier,
  product_id: identifier,
  policy_json: policySchema,
  starts_at: timestamp,
  ends_at: timestamp,
  rev: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
};
const termOrder = { path: ['ends_at'], message: 'ends_at must be after starts_at' };

export const entitlementRecordSchema = z
  .strictObject({ op: z.literal('entitlement'), ...entitlementFields })
  .refine((e) => termIsValid(e.starts_at, e.ends_at), termOrder);
export const revokeRecordSchema = z.strictObject({
  op: z.literal('revoke'),
  entitlement_id: entitlementId,
});
export const settingRecordSchema = z.strictObject({
  op: z.literal('setting'),
  key: z.string().max(100),
  value: z.unknown(),
});

export type EntitlementRecord = z.output<typeof entitlementRecordSchema>;
export type ImportRecord =
  EntitlementRecord | z.output<typeof revokeRecordSchema> | z.output<typeof settingRecordSchema>;

const IMPORT_SCHEMAS = {
  entitlement: entitlementRecordSchema,
  revoke: revokeRecordSchema,
  setting: settingRecordSchema,
} as const;

/** Settings a bundle may carry, and their value schemas. Unknown keys are refused. */
export const SETTING_SCHEMAS = {
  allow_manual_provisioning: z.boolean({ message: 'must be true or false' }),
  vendor_keys: z
    .array(z.string().max(200))
    .min(1, 'must list at least one key')
    .max(16, 'at most 16 keys'),
  default_lease_ttl_seconds: z
    .int()
    .min(10)
    .max(30 * 86_400),
} as const;
export type SettingKey = keyof typeof SETTING_SCHEMAS;

/** Parses one payload line as a strict JSON object (no duplicate keys, no unsafe integers). */
export function parseLine(line: Buffer, lineNo: number): Record<string, unknown> {
  if (!isUtf8(line))
    throw rejected('malformed', `record ${lineNo} is not valid UTF-8`, { record: lineNo });
  let value: unknown;
  try {
    value = parseStrictJson(line.toString('utf8'));
  } catch (err) {
    if (err instanceof StrictJsonError)
      throw rejected('malformed', `record ${lineNo} is not valid JSON: ${err.where}`, {
        record: lineNo,
      });
    throw err;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw rejected('malformed', `record ${lineNo} is not a JSON object`, { record: lineNo });
  }
  return value as Record<string, unknown>;
}

/** Validates a parsed import record by its `op`. */
export function parseImportRecord(value: Record<string, unknown>, lineNo: number): ImportRecord {
  const op = value.op;
  if (typeof op !== 'string' || !(op in IMPORT_SCHEMAS)) {
    throw rejected(
      'malformed',
      `record ${lineNo}: op must be entitlement, revoke or setting, got ${JSON.stringify(op)?.slice(0, 40) ?? 'nothing'}`,
      { record: lineNo },
    );
  }
  const r = IMPORT_SCHEMAS[op as keyof typeof IMPORT_SCHEMAS].safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw rejected('malformed', `record ${lineNo} (${op}): ${formatPath(i.path)}: ${i.message}`, {
      record: lineNo,
      path: formatPath(i.path),
    });
  }
  return r.data as ImportRecord;
}

/** Validates a setting's value; unknown keys are refused. */
export function parseSetting(
  key: string,
  value: unknown,
  where: string,
): { key: SettingKey; value: unknown } {
  if (!(key in SETTING_SCHEMAS)) {
    throw rejected(
      'malformed',
      `${where}: unknown setting ${JSON.stringify(key).slice(0, 60)} (known: ${Object.keys(SETTING_SCHEMAS).join(', ')})`,
    );
  }
  const r = SETTING_SCHEMAS[key as SettingKey].safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw rejected(
      'malformed',
      `${where}: setting ${key}${i.path.length ? `.${formatPath(i.path)}` : ''}: ${i.message}`,
    );
  }
  return { key: key as SettingKey, value: r.data };
}

/** The input of `vendor sign --in`: what the vendor wants this server to hold. */
export const signInputSchema = z.strictObject({
  entitlements: z
    .array(
      z
        .strictObject(entitlementFields)
        .refine((e) => termIsValid(e.starts_at, e.ends_at), termOrder),
    )
    .max(1_000_000),
  revoked: z.array(entitlementId).max(1_000_000).optional(),
  settings: z.record(z.string(), z.unknown()).optional(),
});

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const ms = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Export records whose content `vendor verify-export` checks (the others are only counted). */
export const auditRecordSchema = z.strictObject({
  op: z.literal('audit'),
  seq: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  at: ms,
  actor: z.string(),
  action: z.string(),
  target_type: z.string().nullable(),
  target_id: z.string().nullable(),
  details: z.string(),
  prev_hash: hex64,
  hash: hex64,
});
export const auditHeadRecordSchema = z.strictObject({
  op: z.literal('audit_head'),
  seq: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  hash: hex64,
});
export const enrolmentRecordSchema = z.strictObject({
  op: z.literal('enrolment'),
  server_id: identifier,
  public_key: z.string().max(200),
  kid: z.string().max(200),
});

/** An export's count of one quota's installations on one entitlement, at the export. */
export const quotaUsageRecordSchema = z.strictObject({
  op: z.literal('quota_usage'),
  entitlement_id: identifier,
  quota: z.string().regex(QUOTA_NAME),
  used: z.int().min(0),
  /** The policy's limit now; null when the policy no longer names the quota. */
  limit: z.int().min(0).nullable(),
});

export const EXPORT_OPS = [
  'enrolment',
  'usage',
  'seat',
  'quota_usage',
  'manual_entitlement',
  'audit',
  'audit_head',
  'clock_event',
] as const;

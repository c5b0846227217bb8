/**
 * Edge schemas (zod): every body, query, CLI input and bundle record is parsed here, then trusted.
 * A failure is always `invalid_request` with details.issues[{path, message}].
 */
import { z } from 'zod';
import { AppError } from './errors.ts';
import type { Policy, PolicyType } from './domain/types.ts';
import { termIsValid } from './domain/entitlement-rules.ts';
import {
  INSTALLATION_NAME_MAX,
  INSTALLATION_TOKEN_MAX,
  MAX_QUOTA_LIMIT,
  MAX_QUOTAS,
  METADATA_MAX_BYTES,
  QUOTA_NAME,
} from './domain/quota-rules.ts';
import { ENTITLEMENT_STATUSES, hasNamedSeats, POLICY_TYPES } from './domain/types.ts';
import { MAX_WAIT_SECONDS } from './domain/lease-queue.ts';
import {
  importError,
  MAX_IMPORT_ERRORS_SHOWN,
  type EntitlementInput,
  type EntitlementPatch,
  type ImportItemError,
} from './domain/entitlements.ts';

/**
 * The wording of zod's own issues, for every schema parsed anywhere (HTTP bodies and queries, CLI
 * options, import files, bundle records): a field left out is "starts_at is required" (the
 * issue's full path), a value of the wrong kind says what was expected in words. A message a
 * schema sets itself wins over these (zod's order: schema, parse, then this config).
 */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code !== 'invalid_type') return undefined;
  const path = iss.path === undefined || iss.path.length === 0 ? undefined : formatPath(iss.path);
  if (iss.input === undefined)
    return path === undefined ? 'a value is required' : `${path} is required`;
  const want = EXPECTED_WORDS[iss.expected];
  if (want === undefined) return undefined;
  const got =
    iss.input === null ? 'null' : Array.isArray(iss.input) ? 'an array' : `a ${typeof iss.input}`;
  return `must be ${want}, not ${got}`;
}
const EXPECTED_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
};
z.config({ customError: issueMessage });

/** Ids given by people and other systems: visible characters, no whitespace or control characters. */
export const identifier = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .regex(/^[^\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u, 'must not contain spaces or control characters');

/**
 * A subject id (user or host name): an identifier, and also no invisible (default-ignorable)
 * characters, lone surrogates or unassigned code points. Subjects are matched by a canonical key
 * (src/subjects.ts: NFC, then Unicode case folding), so `alice` and `Alice` are one subject; an
 * invisible character (a variation selector, a Hangul filler) would make a look-alike id another
 * subject, and Unicode promises stable normalisation and case folding for assigned characters only.
 */
export const subjectIdentifier = identifier.regex(
  /^[^\p{Default_Ignorable_Code_Point}\p{Cs}\p{Cn}]+$/u,
  'must not contain invisible, unassigned or surrogate characters',
);

export const featureName = z
  .string()
  .min(1)
  .max(128)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:-]*$/,
    'features are letters, digits and . _ : - (starting with a letter or digit)',
  );

/** RFC 3339 with an offset; stored as epoch milliseconds. */
export const timestamp = z
  .string()
  .max(40)
  .pipe(
    z.iso.datetime({
      offset: true,
      message: 'must be an RFC 3339 time such as 2024-01-15T11:30:00Z',
    }),
  )
  .transform((s) => Date.parse(s))
  .refine(
    (ms) => Number.isFinite(ms) && ms >= 0 && ms < Date.UTC(10000, 0, 1),
    'must be between 1970 and 9999',
  );

/** The template marketplace's license-type words, accepted as policy types (normaliseType). */
export const MARKETPLACE_ALIASES = ['individual', 'seat_based', 'team', 'unlimited'] as const;

export const MAX_SEATS_LIMIT = 1_000_000;
/** The longest borrow a policy may allow: 90 days. */
export const MAX_BORROW_HOURS = 90 * 24;

/**
 * An enum field worded the house way, `role must be one of admin, tenant_admin, reader`, instead of
 * zod's generic "Invalid option".
 */
export function oneOf<const T extends readonly [string, ...string[]]>(field: string, values: T) {
  return z.enum(values, { message: `${field} must be one of ${values.join(', ')}` });
}

/** The fields of policy_json, as given (before the cross-field rules and normalisation). */
const policyFields = z.strictObject({
  type: z.enum([...POLICY_TYPES, ...MARKETPLACE_ALIASES], {
    message: `type must be one of ${POLICY_TYPES.join(', ')} (or ${MARKETPLACE_ALIASES.join(', ')})`,
  }),
  max_seats: z.int().min(1).max(MAX_SEATS_LIMIT).optional(),
  features: z
    .array(featureName)
    .max(256)
    .refine((f) => new Set(f).size === f.length, 'features must not repeat')
    .optional(),
  lease_ttl_seconds: z
    .int()
    .min(5)
    .max(30 * 86_400)
    .optional(),
  grace_days: z.int().min(0).max(3650).optional(),
  seat_assignment: oneOf('seat_assignment', ['auto', 'manual']).optional(),
  auto_update: z.boolean().optional(),
  quotas: z
    .preprocess(
      (q, ctx) => {
        // zod's record drops an own `__proto__` key without a word: refuse it here instead.
        if (typeof q === 'object' && q !== null && Object.hasOwn(q, '__proto__'))
          ctx.addIssue({ code: 'custom', message: 'a quota may not be named __proto__' });
        return q;
      },
      z
        .record(
          z.string().regex(QUOTA_NAME, 'quota names are 1 to 64 of a-z 0-9 _ -'),
          z.int().min(0).max(MAX_QUOTA_LIMIT),
        )
        .refine((q) => Object.keys(q).length <= MAX_QUOTAS, `at most ${MAX_QUOTAS} quotas`),
    )
    .optional(),
  max_borrow_hours: z.int().min(0).max(MAX_BORROW_HOURS).optional(),
  max_borrowed_seats: z.int().min(0).max(MAX_SEATS_LIMIT).optional(),
  overdraft_seats: z.int().min(0).max(MAX_SEATS_LIMIT).optional(),
  max_instances_per_subject: z.int().min(1).max(1000).optional(),
});

/** Every field policy_json may hold (the README's policy table lists each). */
export const POLICY_FIELD_NAMES = Object.keys(policyFields.shape);

const FLOATING_FIELDS = [
  'max_borrow_hours',
  'max_borrowed_seats',
  'overdraft_seats',
  'max_instances_per_subject',
] as const;

/** policy_json: the four types plus the marketplace's license-type words, normalised. */
export const policySchema = policyFields
  .superRefine((p, ctx) => {
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: [path], message });
    const type = normaliseType(p.type);
    if (p.type === 'individual' && p.max_seats !== undefined && p.max_seats !== 1) {
      issue('max_seats', 'an individual license has exactly 1 seat');
    } else if (type === 'feature_based' && p.max_seats !== undefined) {
      issue('max_seats', `${p.type} has no seat limit: leave max_seats out`);
    } else if (type !== 'feature_based' && p.type !== 'individual' && p.max_seats === undefined) {
      issue('max_seats', `max_seats is required for ${p.type}`);
    }
    if (p.seat_assignment !== undefined && !hasNamedSeats(type)) {
      issue('seat_assignment', 'seat_assignment applies to per_user and per_machine only');
    }
    if (type === 'feature_based') {
      for (const f of ['overdraft_seats', 'max_borrowed_seats'] as const)
        if (p[f] !== undefined) issue(f, `${p.type} has no seat limit: leave ${f} out`);
    }
  })
  .transform((p): Policy => {
    const out: Policy = { type: normaliseType(p.type) };
    if (p.type === 'individual') out.max_seats = 1;
    else if (p.max_seats !== undefined) out.max_seats = p.max_seats;
    if (p.features !== undefined) out.features = p.features;
    if (p.lease_ttl_seconds !== undefined) out.lease_ttl_seconds = p.lease_ttl_seconds;
    if (p.grace_days !== undefined) out.grace_days = p.grace_days;
    if (p.seat_assignment !== undefined) out.seat_assignment = p.seat_assignment;
    if (p.auto_update !== undefined) out.auto_update = p.auto_update;
    if (p.quotas !== undefined) out.quotas = p.quotas;
    for (const f of FLOATING_FIELDS) if (p[f] !== undefined) out[f] = p[f];
    return out;
  });

function normaliseType(t: string): PolicyType {
  switch (t) {
    case 'individual':
    case 'seat_based':
    case 'team':
      return 'per_user';
    case 'unlimited':
      return 'feature_based';
    default:
      return t as PolicyType;
  }
}

/**
 * The policy's fields refused at the top of an entitlement, each with a message that shows where
 * it goes (people write `{"max_seats": 12}` for `{"policy_json": {"max_seats": 12}}`); `note`
 * follows the example.
 */
/** A value as JSON for a message: at most 60 characters (a body can be large). */
function shortJson(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.length > 60 ? '…' : text;
}

function policyFieldsMisplaced(note = '') {
  return Object.fromEntries(
    Object.keys(policyFields.shape).map((key) => [
      key,
      z
        .never({
          error: (iss) =>
            `${key} belongs in policy_json: {"policy_json": {"${key}": ${shortJson(iss.input)}}}${note}`,
        })
        .optional(),
    ]),
  ) as Record<keyof typeof policyFields.shape, z.ZodOptional<z.ZodNever>>;
}

const TERM_FIELDS = new Set(['starts_at', 'ends_at']);

export const entitlementCreateSchema = z
  .strictObject({
    ...policyFieldsMisplaced(),
    tenant_id: identifier,
    product_id: identifier,
    policy_json: policySchema,
    starts_at: timestamp,
    ends_at: timestamp,
    external_id: identifier.optional(),
  })
  .refine((e) => termIsValid(e.starts_at, e.ends_at), {
    path: ['ends_at'],
    message: 'ends_at must be after starts_at',
    // Only between two valid times: after "ends_at: must be an RFC 3339 time" it says nothing new.
    // (An issue at the root, a body that is no object, leaves no term to compare.)
    when: (payload) =>
      !payload.issues.some(
        (i) => i.path === undefined || i.path.length === 0 || TERM_FIELDS.has(String(i.path[0])),
      ),
  })
  .transform((e): EntitlementInput => ({
    tenantId: e.tenant_id,
    productId: e.product_id,
    policy: e.policy_json,
    startsAt: e.starts_at,
    endsAt: e.ends_at,
    externalId: e.external_id,
  }));

export const entitlementUpdateSchema = z
  .strictObject({
    ...policyFieldsMisplaced(
      ' (policy_json replaces the whole policy: give its type and every field to keep)',
    ),
    policy_json: policySchema.optional(),
    starts_at: timestamp.optional(),
    ends_at: timestamp.optional(),
    external_id: identifier.nullable().optional(),
    tenant_id: z
      .never({ message: 'tenant_id cannot be changed: create a new entitlement' })
      .optional(),
    product_id: z
      .never({ message: 'product_id cannot be changed: create a new entitlement' })
      .optional(),
  })
  .refine((u) => Object.values(u).some((v) => v !== undefined), {
    message: 'give at least one field to change',
  })
  .transform((u): EntitlementPatch => ({
    policy: u.policy_json,
    startsAt: u.starts_at,
    endsAt: u.ends_at,
    externalId: u.external_id,
  }));

export const renewSchema = z.strictObject({
  period_months: z.int().min(1).max(120),
});

export const importEnvelopeSchema = z.strictObject({
  entitlements: z
    .array(z.unknown())
    .min(1, 'entitlements must hold at least one entitlement')
    .max(200_000),
});

/** Parses every item of a bulk import; all valid or an invalid_request listing each bad item by index. */
export function parseImportItems(items: unknown[]): EntitlementInput[] {
  const out: EntitlementInput[] = [];
  const errors: ImportItemError[] = [];
  let errorCount = 0;
  for (let i = 0; i < items.length; i++) {
    const r = entitlementCreateSchema.safeParse(items[i]);
    if (r.success) out.push(r.data);
    else {
      errorCount++;
      if (errors.length < MAX_IMPORT_ERRORS_SHOWN) {
        const first = r.error.issues[0]!;
        errors.push({
          index: i,
          code: 'invalid_request',
          path: formatPath(first.path),
          message: first.message,
        });
      }
    }
  }
  if (errorCount > 0) throw importError(errorCount, items.length, errors);
  return out;
}

export const listQuerySchema = z.strictObject({
  /** Entitlements whose id starts with this (case-sensitive, as ids are). */
  id_prefix: identifier.optional(),
  tenant_id: identifier.optional(),
  product_id: identifier.optional(),
  status: oneOf('status', ENTITLEMENT_STATUSES).optional(),
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

export const tokenCreateSchema = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters'),
    role: oneOf('role', ['admin', 'tenant_admin', 'reader']).default('admin'),
    tenant_id: identifier.optional(),
    expires_in_days: z.int().min(1).max(3650).optional(),
  })
  .superRefine((t, ctx) => {
    if (t.role === 'tenant_admin' && t.tenant_id === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['tenant_id'],
        message: 'a tenant_admin token needs tenant_id',
      });
    if (t.role === 'admin' && t.tenant_id !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['tenant_id'],
        message: 'an admin token spans every tenant; use role tenant_admin for one tenant',
      });
  });

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return (
    path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
      .join('')
      .replace(/^\./, '') || '(root)'
  );
}

/** Parses with a schema or throws invalid_request with details.issues[{path, message}]. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what = 'request body',
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues
    .slice(0, 50)
    .map((i) => ({ path: formatPath(i.path), message: i.message }));
  const first = issues[0]!;
  // A type issue worded by this file ("starts_at is required") names its field already.
  const said =
    r.error.issues[0]!.code === 'invalid_type' && first.message.startsWith(`${first.path} `)
      ? first.message
      : `${first.path}: ${first.message}`;
  throw new AppError('invalid_request', `invalid ${what}: ${said}`, {
    issues,
  });
}

export const subjectTypeSchema = z.enum(['user', 'machine'], {
  message: 'subject_type must be user or machine',
});

const leaseIdShape = z
  .string()
  .regex(/^lease_[A-Za-z0-9_-]{22,40}$/, 'must be a lease id as the server gave it (lease_…)');

export const leaseRequestSchema = z.strictObject({
  product_id: identifier,
  tenant_id: identifier,
  subject_type: subjectTypeSchema,
  subject_id: subjectIdentifier,
  features: z.array(featureName).max(256).optional(),
  entitlement_id: identifier.optional(),
  /** Borrow for offline use: the lease (and its token) lasts this many hours. */
  borrow_hours: z.int().min(1).max(MAX_BORROW_HOURS).optional(),
  /** One of several instances of the subject sharing its lease and seat. */
  instance_id: identifier.optional(),
  /** Wait this long, first come first served, for a seat when all are in use. */
  wait_seconds: z.int().min(1).max(MAX_WAIT_SECONDS).optional(),
});

export const leaseIdSchema = z.strictObject({ lease_id: leaseIdShape });

/** Renew and release: the lease, and the instance of a shared lease (instance_id) if any. */
export const leaseInstanceSchema = z.strictObject({
  lease_id: leaseIdShape,
  instance_id: identifier.optional(),
});

export const statusQuerySchema = z.strictObject({
  product_id: identifier,
  subject_type: subjectTypeSchema,
  subject_id: subjectIdentifier,
  tenant_id: identifier.optional(),
});

export const leaseListQuerySchema = z.strictObject({
  entitlement_id: identifier.optional(),
  tenant_id: identifier.optional(),
  product_id: identifier.optional(),
  subject_type: subjectTypeSchema.optional(),
  subject_id: subjectIdentifier.optional(),
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

export const checkQuerySchema = z.strictObject({
  subject_type: subjectTypeSchema.optional(),
  subject_id: subjectIdentifier.optional(),
});

export const usageCsvQuerySchema = z.strictObject({
  days: z.coerce.number().int().min(1).max(3660).optional(),
});

const subjectSchema = z.strictObject({
  subject_type: subjectTypeSchema,
  subject_id: subjectIdentifier,
});

/** One seat: `{subject_type, subject_id}` or the marketplace's `{principal_id}`. */
export const seatAssignSchema = z.union(
  [subjectSchema, z.strictObject({ principal_id: subjectIdentifier })],
  {
    message: 'give {"subject_type", "subject_id"} or {"principal_id"}',
  },
);

/** Many seats: `{subjects: [...]}` or the marketplace's `{principal_ids: [...]}`. */
export const seatBulkSchema = z.union(
  [
    z.strictObject({ subjects: z.array(subjectSchema).min(1).max(10_000) }),
    z.strictObject({ principal_ids: z.array(subjectIdentifier).min(1).max(10_000) }),
  ],
  { message: 'give {"subjects": [{"subject_type", "subject_id"}, …]} or {"principal_ids": […]}' },
);

export const seatListQuerySchema = z.strictObject({
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

/** A version, principal id or idempotency key of an installation (content: quota-rules.ts). */
const installToken = z.string().meta({
  description: `1 to ${INSTALLATION_TOKEN_MAX} characters, no spaces or control characters`,
});

/**
 * An installation (one unit of a quota): the body of POST /v1/entitlements/{id}/installations.
 * Its shape only (which fields, their JSON types): their content (quota names, lengths, visible
 * characters, metadata size) is quota-rules.ts checkInstallFields', the one home the quota
 * service applies for every face, so HTTP and the CLI refuse a bad field in the same words.
 */
export const installationCreateSchema = z.strictObject({
  quota: z.string().meta({ description: 'a quota the policy names: 1 to 64 of a-z 0-9 _ -' }),
  name: z.string().meta({
    description: `1 to ${INSTALLATION_NAME_MAX} characters, a visible one among them, no control characters`,
  }),
  metadata: z
    .record(z.string(), z.unknown())
    .optional()
    .meta({ description: `a JSON object, at most ${METADATA_MAX_BYTES} bytes as JSON` }),
  version: installToken.nullable().optional(),
  principal_id: installToken.nullable().optional(),
  /** Or the Idempotency-Key header; per entitlement. */
  idempotency_key: installToken.nullable().optional(),
});

/** PATCH /v1/installations/{id}: the version it runs now (its content: checkVersion). */
export const installationPatchSchema = z.strictObject({ version: installToken });

export const installationListQuerySchema = z.strictObject({
  entitlement_id: identifier.optional(),
  tenant_id: identifier.optional(),
  quota: z.string().regex(QUOTA_NAME, 'must be a quota name: 1 to 64 of a-z 0-9 _ -').optional(),
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

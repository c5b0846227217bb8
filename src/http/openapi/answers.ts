/**
 * The answers of the JSON API as zod schemas, for the OpenAPI document (http/openapi/build.ts)
 * only: the answers themselves are made by the views (views.ts) and never parsed. Each schema is
 * held to its view twice: at compile time (`AnswersFitViews` below: every value a view can make is
 * a value of its schema, with no top-level field the schema lacks) and at run time
 * (test/http/openapi.test.ts validates real answers against the document).
 */
import { z } from 'zod';
import { ERROR_STATUS, type ErrorCode, type ErrorEnvelope } from '../../errors.ts';
import { ENTITLEMENT_STATUSES, POLICY_TYPES, ROLES, SUBJECT_TYPES } from '../../domain/types.ts';
import type * as views from '../../views.ts';
import { PERMISSIONS } from '../permissions.ts';
import type { auditRowView } from '../routes/audit.ts';
import type { SyncService } from '../../sync/service.ts';
import type { ImportResult as BundleImportResult } from '../../sync/import.ts';

/** A time as the API writes it: RFC 3339 in UTC. */
export const time = z.iso.datetime({ offset: true });
const subjectType = z.enum(SUBJECT_TYPES);
export const entitlementStatus = z.enum(ENTITLEMENT_STATUSES);
export const count = z.int().min(0);

/** policy_json as stored and answered: the four types (the marketplace words are normalised). */
export const policyAnswer = z.strictObject({
  type: z.enum(POLICY_TYPES),
  max_seats: z.int().min(1).optional(),
  features: z.array(z.string()).optional(),
  lease_ttl_seconds: z.int().optional(),
  grace_days: z.int().optional(),
  seat_assignment: z.enum(['auto', 'manual']).optional(),
  auto_update: z.boolean().optional(),
  quotas: z.record(z.string(), z.int().min(0)).optional(),
  max_borrow_hours: z.int().optional(),
  max_borrowed_seats: z.int().optional(),
  overdraft_seats: z.int().optional(),
  max_instances_per_subject: z.int().optional(),
});

/** Each quota of the policy by name (present when the policy has quotas). */
const quotasAnswer = z
  .record(z.string(), z.strictObject({ limit: count, used: count, remaining: count }))
  .optional();

/** A lease's floating flags: each present (true) only when so. */
const floatingFlags = {
  overdraft: z.literal(true).optional().meta({ description: 'granted past max_seats' }),
  borrowed: z.literal(true).optional().meta({ description: 'borrowed for offline use' }),
};

const entitlementFields = {
  entitlement_id: z.string(),
  tenant_id: z.string(),
  product_id: z.string(),
  policy_json: policyAnswer,
  starts_at: time,
  ends_at: time,
  status: entitlementStatus,
  source: z.enum(['manual', 'bundle']),
  external_id: z.string().nullable(),
  created_at: time,
  updated_at: time,
};

export const entitlementAnswer = z.strictObject(entitlementFields);

export const entitlementDetailAnswer = z.strictObject({
  ...entitlementFields,
  usage: z.strictObject({
    active_leases: count,
    seats_assigned: count,
    max_seats: z.int().nullable(),
  }),
  quotas: quotasAnswer,
});

export const leaseCheckAnswer = z.strictObject({
  entitlement_id: z.string(),
  status: entitlementStatus,
  can_lease: z.boolean(),
  remaining_seats: count.nullable(),
  reason: z.string().nullable(),
  quotas: quotasAnswer,
});

export const usageAnswer = z.strictObject({
  entitlement_id: z.string(),
  tenant_id: z.string(),
  product_id: z.string(),
  seats: z.strictObject({ total: z.int().nullable(), assigned: count, active_30d: count }),
  leases: z.strictObject({ active: count, peak_30d: count, borrowed: count.optional() }),
  activity: z.strictObject({
    grants_30d: count,
    denials_30d: count,
    unique_users_30d: count,
    overdraft_grants_30d: count.optional(),
    borrows_30d: count.optional(),
  }),
  quotas: quotasAnswer,
});

export const importResultAnswer = z.strictObject({
  created: count,
  updated: count,
  unchanged: count,
  total: count,
  items: z.array(
    z.strictObject({
      index: count,
      entitlement_id: z.string(),
      action: z.enum(['created', 'updated', 'unchanged']),
    }),
  ),
});

const apiTokenFields = {
  token_id: z.string(),
  name: z.string(),
  role: z.enum(ROLES),
  tenant_id: z.string().nullable(),
  prefix: z.string(),
  status: z.enum(['active', 'expired', 'revoked']),
  created_at: time,
  expires_at: time.nullable(),
  last_used_at: time.nullable(),
  revoked_at: time.nullable(),
};

export const apiTokenAnswer = z.strictObject(apiTokenFields);
export const whoamiAnswer = z.strictObject({
  token_id: z.string(),
  name: z.string().nullable(),
  role: z.enum(ROLES),
  tenant_id: z.string().nullable(),
  permissions: z.array(z.enum(PERMISSIONS)),
  server_time: time,
  clock_suspect: z.boolean(),
});
export const createdApiTokenAnswer = z.strictObject({
  ...apiTokenFields,
  token: z.string().meta({ description: 'the secret: shown in this answer only' }),
});

export const leaseAnswer = z.strictObject({
  lease_id: z.string(),
  entitlement_id: z.string(),
  tenant_id: z.string().optional(),
  product_id: z.string().optional(),
  subject_type: subjectType,
  subject_id: z.string(),
  features: z.array(z.string()),
  state: z.enum(['active', 'released', 'revoked', 'expired']),
  granted_at: time,
  renewed_at: time,
  expires_at: time,
  ended_at: time.nullable(),
  ...floatingFlags,
});

export const issuedLeaseAnswer = z.strictObject({
  lease_id: z.string(),
  token: z.string().meta({ description: 'the PASETO v4.public lease token' }),
  expires_at: time,
  features: z.array(z.string()),
  grace: z.literal(true).optional(),
  ...floatingFlags,
});

export const releasedLeaseAnswer = z.strictObject({
  lease_id: z.string(),
  state: z.enum(['active', 'released', 'revoked', 'expired']),
  released_at: time.nullable(),
  instances: count.optional().meta({
    description: 'a shared lease: its instances left in force (the lease ends with the last)',
  }),
});

export const subjectStatusAnswer = z.strictObject({
  entitlement_id: z.string(),
  tenant_id: z.string(),
  status: entitlementStatus,
  current_lease: z
    .strictObject({ lease_id: z.string(), expires_at: time, ...floatingFlags })
    .nullable(),
  features: z.array(z.string()),
  usage: z.strictObject({
    concurrent_seats_used: count,
    max_seats: z.int().nullable(),
    overdraft_seats: count.optional().meta({
      description: 'the policy’s overdraft seats, when it has some: grants past max_seats',
    }),
    seats_assigned: count.optional(),
    seat_held: z.boolean().optional(),
    queued: count.optional().meta({ description: 'lease requests waiting for a seat' }),
  }),
});

const seatFields = {
  seat_id: z.string(),
  entitlement_id: z.string(),
  subject_type: subjectType,
  subject_id: z.string(),
  assigned_at: time,
  assigned_by: z.string(),
};

export const seatAnswer = z.strictObject(seatFields);
export const seatsAssignedAnswer = z.strictObject({ data: z.array(seatAnswer), assigned: count });
export const seatRevokedAnswer = z.strictObject({
  ...seatFields,
  revoked: z.literal(true),
  ended_lease_id: z.string().nullable(),
});

export const keysAnswer = z.strictObject({
  keys: z.array(
    z.strictObject({
      kid: z.string(),
      public_key: z.string().meta({ description: 'PASERK k4.public' }),
      status: z.literal('active'),
    }),
  ),
});

export const auditRowAnswer = z.strictObject({
  seq: z.int().min(1),
  at: time,
  actor: z.string(),
  action: z.string(),
  target_type: z.string().nullable(),
  target_id: z.string().nullable(),
  details: z.unknown(),
  prev_hash: z.string(),
  hash: z.string(),
});

export const auditPageAnswer = z.strictObject({
  data: z.array(auditRowAnswer),
  next_cursor: z.string().nullable(),
  head: z.strictObject({ seq: count, hash: z.string() }),
});

export const syncImportAnswer = z.strictObject({
  status: z.enum(['applied', 'unchanged', 'dry_run']),
  seq: z.int(),
  manifest_sha256: z.string(),
  added: count,
  changed: count,
  revoked: count,
  unchanged: count,
  suspended: count,
  ignored: count,
  settings: z.array(z.string()),
  seats_cut: z.array(
    z.strictObject({ entitlement_id: z.string(), max_seats: z.int(), in_use: count }),
  ),
  dry_run: z.literal(true).optional(),
  diff: z
    .strictObject({
      added: z.array(z.string()),
      changed: z.array(z.strictObject({ entitlement_id: z.string(), fields: z.array(z.string()) })),
      revoked: z.array(z.string()),
      suspended: z.array(z.string()),
      ignored: z.array(z.string()),
      settings: z.array(z.strictObject({ key: z.string(), from: z.unknown(), to: z.unknown() })),
      truncated: z.boolean(),
    })
    .optional(),
});

export const syncStatusAnswer = z.strictObject({
  server_id: z.string(),
  public_key: z.string(),
  kid: z.string(),
  vendor_keys: z.array(z.strictObject({ kid: z.string(), public_key: z.string() })),
  allow_manual_provisioning: z.boolean(),
  default_lease_ttl_seconds: z.int().nullable(),
  last_import: z
    .strictObject({
      seq: z.int(),
      manifest_sha256: z.string(),
      iss: z.string(),
      kid: z.string(),
      iat: time,
      exp: time,
      records: count,
      imported_at: time,
      acked_export_seq: z.int().nullable(),
    })
    .nullable(),
  last_export: z
    .strictObject({
      seq: z.int(),
      manifest_sha256: z.string(),
      created_at: time,
      period_start: time,
      audit_seq: z.int(),
      records: count,
      file: z.string().nullable(),
    })
    .nullable(),
  bundle_entitlements: z.strictObject({ active: count, suspended: count, revoked: count }),
  applying: z.strictObject({ seq: z.int(), manifest_sha256: z.string(), since: time }).nullable(),
  permanent_revocations: count,
});

export const healthAnswer = z.strictObject({ status: z.literal('ok') });
export const readyAnswer = z.strictObject({
  status: z
    .enum(['ready', 'draining', 'storage_full', 'storage_unavailable', 'clock_suspect'])
    .meta({ description: '`ready` with 200; any other with 503' }),
  clock: z.literal('suspect').optional(),
});

/** Any JSON object (the OpenAPI document itself). */
export const anyObject = z.record(z.string(), z.unknown());

export const installationAnswer = z.strictObject({
  installation_id: z.string(),
  entitlement_id: z.string(),
  quota: z.string(),
  name: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  version: z.string().nullable(),
  principal_id: z.string().nullable(),
  idempotency_key: z.string().nullable(),
  created_at: time,
  updated_at: time,
});

/** A list page of `item`: `{data, next_cursor}` (null on the last page). */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.strictObject({ data: z.array(item), next_cursor: z.string().nullable() });
}

export const entitlementPageAnswer = pageOf(entitlementAnswer);
export const seatPageAnswer = pageOf(seatAnswer);
export const leasePageAnswer = pageOf(leaseAnswer);
export const apiTokenPageAnswer = pageOf(apiTokenAnswer);
export const installationPageAnswer = pageOf(installationAnswer);

/** The error envelope every failure answers (errors.ts toEnvelope). */
export const errorAnswer = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    request_id: z.string().optional(),
    details: z.record(z.string(), z.unknown()),
  }),
});

// ---- compile-time: each schema describes what its view makes ----

/**
 * true when S and the view V have the same top-level fields and every value S describes is a V.
 * (S is the narrower: the views type enums as `string` where the schemas list the values.)
 */
export type Fits<V, S extends z.ZodType> = [z.output<S>] extends [V]
  ? [Exclude<keyof V, keyof z.output<S>> | Exclude<keyof z.output<S>, keyof V>] extends [never]
    ? true
    : false
  : false;
export type Holds<T extends true> = T;
export type View<F extends (...a: any[]) => unknown> = ReturnType<F>;

/** tsc fails here when a view (views.ts) and its answer schema drift apart. */
export type AnswersFitViews = [
  Holds<Fits<View<typeof views.entitlementView>, typeof entitlementAnswer>>,
  Holds<Fits<View<typeof views.entitlementDetailView>, typeof entitlementDetailAnswer>>,
  Holds<Fits<View<typeof views.leaseCheckView>, typeof leaseCheckAnswer>>,
  Holds<Fits<View<typeof views.usageView>, typeof usageAnswer>>,
  Holds<Fits<View<typeof views.importResultView>, typeof importResultAnswer>>,
  Holds<Fits<View<typeof views.apiTokenView>, typeof apiTokenAnswer>>,
  Holds<Fits<View<typeof views.whoamiView>, typeof whoamiAnswer>>,
  Holds<Fits<View<typeof views.createdApiTokenView>, typeof createdApiTokenAnswer>>,
  Holds<Fits<View<typeof views.leaseView>, typeof leaseAnswer>>,
  Holds<Fits<View<typeof views.issuedLeaseView>, typeof issuedLeaseAnswer>>,
  Holds<Fits<View<typeof views.subjectStatusView>, typeof subjectStatusAnswer>>,
  Holds<Fits<View<typeof views.seatView>, typeof seatAnswer>>,
  Holds<Fits<View<typeof views.seatsAssignedView>, typeof seatsAssignedAnswer>>,
  Holds<Fits<View<typeof views.seatRevokedView>, typeof seatRevokedAnswer>>,
  Holds<Fits<View<typeof views.keysView>, typeof keysAnswer>>,
  Holds<Fits<View<typeof views.installationView>, typeof installationAnswer>>,
  Holds<Fits<View<typeof auditRowView>, typeof auditRowAnswer>>,
  Holds<Fits<BundleImportResult, typeof syncImportAnswer>>,
  Holds<Fits<View<SyncService['status']>, typeof syncStatusAnswer>>,
  Holds<Fits<ErrorEnvelope, typeof errorAnswer>>,
];

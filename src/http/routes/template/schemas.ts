/**
 * The Template Licensing face's request schemas (zod): the seed's bodies and queries, parsed here
 * and mapped to the domain's inputs. The policy rules (the license-type aliases, seats) are
 * policySchema's, in src/schemas.ts: a purchase is parsed through it.
 */
import { z } from 'zod';
import { POLICY_TYPES } from '../../../domain/types.ts';
import {
  identifier,
  MARKETPLACE_ALIASES,
  MAX_SEATS_LIMIT,
  policySchema,
  subjectIdentifier,
} from '../../../schemas.ts';
import type {
  PurchaseInput,
  TemplateInput,
  TemplateInstallInput,
} from '../../../domain/templates.ts';
import { DASHBOARDS, PURCHASE_TERM_MONTHS } from '../../../domain/templates.ts';
import { MAX_QUOTA_LIMIT } from '../../../domain/quota-rules.ts';

/** A template version as publishers write them: `1.2.0`, `2024.1`, `1.3.0-rc.1`. */
export const templateVersion = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(
    /^[0-9A-Za-z][0-9A-Za-z.+_-]*$/,
    'a version is letters, digits and . + _ - (such as 1.2.0)',
  );

const text = (max: number) =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

/** PUT /api/v1/marketplace/templates/{template_id}: what the catalogue says of a template. */
export const templatePublishSchema = z
  .strictObject({
    name: text(200),
    description: text(2000).nullable().optional(),
    version: templateVersion,
  })
  .transform((t): TemplateInput => ({
    name: t.name,
    description: t.description,
    version: t.version,
  }));

/** The marketplace's license types, and the server's own policy types, as a purchase takes them. */
const LICENSE_TYPES = [...MARKETPLACE_ALIASES, ...POLICY_TYPES] as const;

/**
 * POST /api/v1/marketplace/templates/{template_id}/licenses: the seed's body. `license_type`,
 * `max_seats` and `auto_update` become the policy (through policySchema: `individual` is per_user
 * with 1 seat, `seat_based` and `team` per_user with max_seats, `unlimited` feature_based);
 * `period_months` (default 12) the term from now.
 */
export const purchaseSchema = z
  .strictObject({
    organization_id: identifier,
    license_type: z.enum(LICENSE_TYPES, {
      message: `license_type must be one of ${LICENSE_TYPES.join(', ')}`,
    }),
    max_seats: z.int().min(1).max(MAX_SEATS_LIMIT).optional(),
    auto_update: z.boolean().optional(),
    max_dashboards: z
      .int()
      .min(0)
      .max(MAX_QUOTA_LIMIT)
      .optional()
      .meta({
        description: `the dashboards quota; absent: ${MAX_QUOTA_LIMIT} (no practical limit)`,
      }),
    period_months: z.int().min(1).max(120).optional(),
  })
  .transform((b, ctx): PurchaseInput => {
    const policy = policySchema.safeParse({
      type: b.license_type,
      ...(b.max_seats !== undefined ? { max_seats: b.max_seats } : {}),
      auto_update: b.auto_update ?? false,
      quotas: { [DASHBOARDS]: b.max_dashboards ?? MAX_QUOTA_LIMIT },
    });
    if (!policy.success) {
      // The policy's own rules, said of the purchase's fields.
      for (const i of policy.error.issues)
        ctx.addIssue({
          code: 'custom',
          path: i.path.map((p) => (p === 'type' ? 'license_type' : p)),
          message: i.message,
        });
      return z.NEVER;
    }
    return {
      organizationId: b.organization_id,
      policy: policy.data,
      periodMonths: b.period_months ?? PURCHASE_TERM_MONTHS,
    };
  });

/** PATCH /api/v1/organizations/{org}/licenses/{license_id}: the seed changes auto_update only. */
export const licensePatchSchema = z.strictObject({ auto_update: z.boolean() });

/** GET …/licenses/{license_id}/permissions?principal_id=…&permission=use|manage */
export const permissionQuerySchema = z.strictObject({
  principal_id: subjectIdentifier,
  permission: z.enum(['use', 'manage'], { message: 'permission must be use or manage' }),
});

/**
 * POST /api/v1/organizations/{org}/templates/{template_id}/install: the seed's `name` and
 * `variables`, and optionally the `version` to install and who installs it (`principal_id`).
 * Their limits (name length, metadata size) are the quota rules' (quota-rules.ts).
 */
export const installSchema = z
  .strictObject({
    name: z.string(),
    variables: z.record(z.string(), z.unknown()).optional(),
    version: templateVersion.optional(),
    principal_id: subjectIdentifier.optional(),
  })
  .transform((b): Omit<TemplateInstallInput, 'idempotencyKey'> => ({
    name: b.name,
    variables: b.variables ?? {},
    version: b.version,
    principalId: b.principal_id,
  }));

/** POST /api/v1/organizations/{org}/dashboards/{dashboard_id}/update-template */
export const updateTemplateSchema = z.strictObject({ version: templateVersion });

/** GET /api/v1/organizations/{org}/installed-templates */
export const installedQuerySchema = z.strictObject({
  cursor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
});

/**
 * The Template Licensing face's request schemas (zod): the seed's bodies and queries, parsed here
 * and mapped to the domain's inputs. The policy rules (the license-type aliases, seats) are
 * policySchema's, in src/schemas.ts: a purchase is parsed through it.
 */
import { z } from 'zod';
import { identifier, MAX_SEATS_LIMIT, policySchema, subjectIdentifier } from '../../../schemas.ts';
import type { PurchaseInput, TemplateInput } from '../../../domain/templates.ts';
import { PURCHASE_TERM_MONTHS } from '../../../domain/templates.ts';

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
const LICENSE_TYPES = [
  'individual',
  'seat_based',
  'team',
  'unlimited',
  'per_user',
  'per_machine',
  'concurrent',
  'feature_based',
] as const;

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
    period_months: z.int().min(1).max(120).optional(),
  })
  .transform((b, ctx): PurchaseInput => {
    const policy = policySchema.safeParse({
      type: b.license_type,
      ...(b.max_seats !== undefined ? { max_seats: b.max_seats } : {}),
      auto_update: b.auto_update ?? false,
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

/** The org and license of a license route's path. */
export const licensePath = { org: identifier, license_id: identifier };

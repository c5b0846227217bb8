/**
 * The Template Licensing face's answers as zod schemas, for the OpenAPI document only (the answers
 * are made by http/routes/template/views.ts); held to their views at compile time below, as
 * answers.ts holds the /v1 ones.
 */
import { z } from 'zod';
import type * as views from '../routes/template/views.ts';
import { count, entitlementStatus, time, type Fits, type Holds, type View } from './answers.ts';

export const templateAnswer = z.strictObject({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  version: z.string().meta({ description: 'the current version: what an install gets' }),
  created_at: time,
  updated_at: time,
});

export const templateListAnswer = z.strictObject({
  data: z.array(templateAnswer),
  next_cursor: z.null(),
});

export const licenseAnswer = z.strictObject({
  id: z.string().meta({ description: 'the license: an entitlement id (ent_…)' }),
  template_id: z.string(),
  organization_id: z.string(),
  license_type: z.enum(['individual', 'seat_based', 'unlimited', 'per_machine', 'concurrent']),
  max_seats: z.int().min(1).nullable(),
  assigned_seats: count,
  auto_update: z.boolean(),
  valid_from: time,
  valid_until: time,
  status: entitlementStatus,
  max_dashboards: count.meta({ description: 'the dashboards quota (0: the license has none)' }),
  current_dashboards: count,
});

export const dashboardAnswer = z.strictObject({
  dashboard_id: z
    .string()
    .meta({ description: 'an installation of the dashboards quota (inst_…)' }),
  name: z.string(),
  template_id: z.string().nullable(),
  template_version: z.string().nullable(),
  license_id: z.string(),
  variables: z.record(z.string(), z.unknown()),
  created_at: time,
  updated_at: time,
});

export const dashboardPageAnswer = z.strictObject({
  data: z.array(dashboardAnswer),
  next_cursor: z.string().nullable(),
});

export const installCheckAnswer = z.strictObject({
  can_install: z.boolean(),
  remaining_dashboards: count,
  remaining_seats: count.nullable(),
  reason: z.string().nullable().meta({
    description:
      "null, or /v1 check's word for the refusal: expired, suspended, revoked, pending, clock_suspect, quota_exhausted",
  }),
});

export const templateUsageAnswer = z.strictObject({
  license_id: z.string(),
  template_name: z.string().nullable(),
  seats: z.strictObject({ total: z.int().nullable(), assigned: count, active_30d: count }),
  dashboards: z.strictObject({ total: count, limit: count }),
  activity: z.strictObject({ views_30d: count, unique_users_30d: count }),
});

export const permissionAnswer = z.strictObject({
  license_id: z.string(),
  principal_id: z.string(),
  permission: z.enum(['use', 'manage']),
  allowed: z.boolean(),
  reason: z.enum(['seat_holder', 'organization_wide', 'organization_admin', 'no_relation']),
});

/** tsc fails here when a view of the face and its answer schema drift apart. */
export type TemplateAnswersFitViews = [
  Holds<Fits<View<typeof views.templateView>, typeof templateAnswer>>,
  Holds<Fits<View<typeof views.templateListView>, typeof templateListAnswer>>,
  Holds<Fits<View<typeof views.licenseView>, typeof licenseAnswer>>,
  Holds<Fits<View<typeof views.permissionView>, typeof permissionAnswer>>,
  Holds<Fits<View<typeof views.dashboardView>, typeof dashboardAnswer>>,
  Holds<Fits<View<typeof views.installCheckView>, typeof installCheckAnswer>>,
  Holds<Fits<View<typeof views.templateUsageView>, typeof templateUsageAnswer>>,
];

/**
 * The Template Licensing face's wire shapes, as the seed writes them (snake_case, RFC 3339 times),
 * made from domain objects here only. Seats answer with the /v1 seat views (views.ts).
 */
import { toIso } from '../../../clock.ts';
import type { Entitlement, Installation, Policy, QuotaState } from '../../../domain/types.ts';
import { deriveStatus } from '../../../domain/types.ts';
import type { UsageNow } from '../../../domain/leases.ts';
import type { UsageReport } from '../../../domain/usage.ts';
import type {
  InstallCheck,
  LicensePermission,
  PermissionCheck,
  Template,
} from '../../../domain/templates.ts';

/**
 * The marketplace's word for a stored policy: per_user with 1 seat is `individual`, other per_user
 * is `seat_based` (`team` is stored as the same per_user, so it reads back `seat_based`),
 * feature_based is `unlimited`; per_machine and concurrent keep their own names.
 */
export function licenseType(p: Policy): string {
  if (p.type === 'per_user') return p.max_seats === 1 ? 'individual' : 'seat_based';
  return p.type === 'feature_based' ? 'unlimited' : p.type;
}

/** A template of the catalogue (GET /api/v1/marketplace/templates[/{id}]). */
export function templateView(t: Template) {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    version: t.version,
    created_at: toIso(t.createdAt),
    updated_at: toIso(t.updatedAt),
  };
}

/** The catalogue: `{data: [...]}` (one page: the catalogue is small). */
export function templateListView(ts: Template[]) {
  return { data: ts.map(templateView), next_cursor: null };
}

/**
 * A license as the seed's purchase answers it, with its dashboard limit as the seed's "License
 * Limits" shows it (`max_dashboards`, `current_dashboards`: the `dashboards` quota); `status` is
 * the derived one at `now` (ms): the seed's active, expired, suspended, revoked, and this
 * server's grace and pending.
 */
export function licenseView(e: Entitlement, now: number, usage: UsageNow, dashboards: QuotaState) {
  return {
    id: e.id,
    template_id: e.productId,
    organization_id: e.tenantId,
    license_type: licenseType(e.policy),
    max_seats: e.policy.max_seats ?? null,
    assigned_seats: usage.seatsAssigned,
    auto_update: e.policy.auto_update ?? false,
    valid_from: toIso(e.startsAt),
    valid_until: toIso(e.endsAt),
    status: deriveStatus(e, now),
    max_dashboards: dashboards.limit,
    current_dashboards: dashboards.used,
  };
}

/**
 * A dashboard: an installation of the `dashboards` quota. The install answers the seed's fields
 * (dashboard_id, name, template_id, template_version, created_at); lists and updates add the rest.
 */
export function dashboardView(i: Installation) {
  const m = i.metadata as { template_id?: unknown; variables?: unknown };
  return {
    dashboard_id: i.id,
    name: i.name,
    template_id: typeof m.template_id === 'string' ? m.template_id : null,
    template_version: i.version,
    license_id: i.entitlementId,
    variables:
      typeof m.variables === 'object' && m.variables !== null
        ? (m.variables as Record<string, unknown>)
        : {},
    created_at: toIso(i.createdAt),
    updated_at: toIso(i.updatedAt),
  };
}

/** GET …/licenses/{id}/entitlements: the seed's three fields, and why not when it cannot. */
export function installCheckView(c: InstallCheck) {
  return {
    can_install: c.canInstall,
    remaining_dashboards: c.remainingDashboards,
    remaining_seats: c.remainingSeats,
    reason: c.reason,
  };
}

/**
 * GET …/licenses/{id}/usage in the seed's shape, from the 30-day usage report (domain/usage.ts):
 * views_30d are lease grants, unique_users_30d distinct subjects that leased or renewed.
 */
export function templateUsageView(
  e: Entitlement,
  template: Template | undefined,
  r: UsageReport,
  dashboards: QuotaState,
) {
  return {
    license_id: e.id,
    template_name: template?.name ?? null,
    seats: { total: r.seats.total, assigned: r.seats.assigned, active_30d: r.seats.active30d },
    dashboards: { total: dashboards.used, limit: dashboards.limit },
    activity: {
      views_30d: r.activity.grants30d,
      unique_users_30d: r.activity.uniqueUsers30d,
    },
  };
}

/** GET …/licenses/{id}/permissions: the seed's rule, answered for one principal. */
export function permissionView(
  e: Entitlement,
  principalId: string,
  permission: LicensePermission,
  c: PermissionCheck,
) {
  return {
    license_id: e.id,
    principal_id: principalId,
    permission,
    allowed: c.allowed,
    reason: c.reason,
  };
}

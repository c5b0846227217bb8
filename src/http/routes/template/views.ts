/**
 * The Template Licensing face's wire shapes, as the seed writes them (snake_case, RFC 3339 times),
 * made from domain objects here only. Seats answer with the /v1 seat views (views.ts).
 */
import { toIso } from '../../../clock.ts';
import type { Entitlement, Policy } from '../../../domain/types.ts';
import { deriveStatus } from '../../../domain/types.ts';
import type { UsageNow } from '../../../domain/leases.ts';
import type { PermissionCheck, LicensePermission, Template } from '../../../domain/templates.ts';

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
 * A license as the seed's purchase answers it; `status` is the derived one at `now` (ms): the
 * seed's active, expired, suspended, revoked, and this server's grace and pending.
 */
export function licenseView(e: Entitlement, now: number, usage: UsageNow) {
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

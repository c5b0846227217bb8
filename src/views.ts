/** The JSON shapes the API and the CLI's --json print. One place, so both faces agree. */
import { toIso } from './clock.ts';
import type { ApiToken, Entitlement } from './domain/types.ts';
import { deriveStatus } from './domain/types.ts';
import type { Lease, Seat } from './storage/leases.ts';

const iso = (ms: number | null) => (ms === null ? null : toIso(ms));

export function entitlementView(e: Entitlement, now: number) {
  return {
    entitlement_id: e.id,
    tenant_id: e.tenantId,
    product_id: e.productId,
    policy_json: e.policy,
    starts_at: toIso(e.startsAt),
    ends_at: toIso(e.endsAt),
    status: deriveStatus(e, now),
    source: e.source,
    external_id: e.externalId,
    created_at: toIso(e.createdAt),
    updated_at: toIso(e.updatedAt),
  };
}

export function apiTokenView(t: ApiToken, now: number) {
  const status =
    t.revokedAt !== null
      ? 'revoked'
      : t.expiresAt !== null && now >= t.expiresAt
        ? 'expired'
        : 'active';
  return {
    token_id: t.id,
    name: t.name,
    role: t.role,
    tenant_id: t.tenantId,
    prefix: t.prefix,
    status,
    created_at: toIso(t.createdAt),
    expires_at: iso(t.expiresAt),
    last_used_at: iso(t.lastUsedAt),
    revoked_at: iso(t.revokedAt),
  };
}

export function leaseView(l: Lease & { tenantId?: string; productId?: string }) {
  return {
    lease_id: l.id,
    entitlement_id: l.entitlementId,
    ...(l.tenantId !== undefined ? { tenant_id: l.tenantId } : {}),
    ...(l.productId !== undefined ? { product_id: l.productId } : {}),
    subject_type: l.subjectType,
    subject_id: l.subjectId,
    features: l.features,
    state: l.state,
    granted_at: toIso(l.grantedAt),
    renewed_at: toIso(l.renewedAt),
    expires_at: toIso(l.expiresAt),
    ended_at: l.endedAt === null ? null : toIso(l.endedAt),
  };
}

/** The answer to a grant or renewal, as the seed shows it. */
export function issuedLeaseView(r: { lease: Lease; token: string; grace: boolean }) {
  return {
    lease_id: r.lease.id,
    token: r.token,
    expires_at: toIso(r.lease.expiresAt),
    features: r.lease.features,
    ...(r.grace ? { grace: true } : {}),
  };
}

export function seatView(s: Seat) {
  return {
    seat_id: s.id,
    entitlement_id: s.entitlementId,
    subject_type: s.subjectType,
    subject_id: s.subjectId,
    assigned_at: toIso(s.assignedAt),
    assigned_by: s.assignedBy,
  };
}

/** The JSON shapes the API and the CLI's --json print. One place, so both faces agree. */
import { toIso } from './clock.ts';
import type { ApiToken, Entitlement } from './domain/types.ts';
import { deriveStatus } from './domain/types.ts';

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
  const status = t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && now >= t.expiresAt ? 'expired' : 'active';
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

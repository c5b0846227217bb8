/** Plain domain types, shared by services, storage and the faces. */

export const POLICY_TYPES = ['per_user', 'per_machine', 'concurrent', 'feature_based'] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];

export interface Policy {
  type: PolicyType;
  max_seats?: number;
  features?: string[];
  lease_ttl_seconds?: number;
  grace_days?: number;
  seat_assignment?: 'auto' | 'manual';
}

export type StoredStatus = 'active' | 'suspended' | 'revoked';
export type EntitlementStatus = StoredStatus | 'pending' | 'expired' | 'grace';
export type Source = 'manual' | 'bundle';

export interface Entitlement {
  id: string;
  tenantId: string;
  productId: string;
  policy: Policy;
  startsAt: number;
  endsAt: number;
  status: StoredStatus;
  source: Source;
  externalId: string | null;
  rev: number | null;
  createdAt: number;
  updatedAt: number;
}

export const DEFAULT_GRACE_DAYS = 30;
export const DAY_MS = 86_400_000;

/** The status an admin sees: the stored one, or one derived from time. */
export function deriveStatus(
  e: Pick<Entitlement, 'status' | 'startsAt' | 'endsAt' | 'policy'>,
  now: number,
): EntitlementStatus {
  if (e.status !== 'active') return e.status;
  if (now < e.startsAt) return 'pending';
  if (now <= e.endsAt) return 'active';
  if (now <= e.endsAt + graceDays(e.policy) * DAY_MS) return 'grace';
  return 'expired';
}

export function graceDays(policy: Policy): number {
  return policy.grace_days ?? DEFAULT_GRACE_DAYS;
}

/** Who did something, as written in the audit log: `token:tok_…`, `cli`, `bundle`, `system`. */
export type Actor = string;

export const ROLES = ['admin', 'tenant_admin', 'reader'] as const;
export type Role = (typeof ROLES)[number];

export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  tenantId: string | null;
  prefix: string;
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/**
 * Plain domain types and the small rules that belong to them, shared by services, storage and the
 * faces. Storage implements these shapes (src/domain/store.ts says how); nothing here knows SQL,
 * HTTP or JSON wire names beyond the policy_json object itself.
 */

export const POLICY_TYPES = ['per_user', 'per_machine', 'concurrent', 'feature_based'] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];

export const SUBJECT_TYPES = ['user', 'machine'] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];

/**
 * The policy types whose seats are named: a subject takes a seat (by an admin or at its first
 * lease) and holds it until it is revoked, whether or not it leases. concurrent counts leases in
 * force instead, feature_based has no seats. The one home of this set: services, usage reports,
 * bundle imports and the policy schema ask here.
 */
export const NAMED_SEAT_POLICIES: ReadonlySet<PolicyType> = new Set<PolicyType>([
  'per_user',
  'per_machine',
]);

/** Does this policy type seat named subjects (per_user, per_machine)? */
export function hasNamedSeats(type: PolicyType): boolean {
  return NAMED_SEAT_POLICIES.has(type);
}

/**
 * The subject type a policy type leases to: per_user → `user`, per_machine → `machine`; null for
 * concurrent and feature_based, which lease to either.
 */
export function policySubjectType(type: PolicyType): SubjectType | null {
  return type === 'per_user' ? 'user' : type === 'per_machine' ? 'machine' : null;
}

export interface Policy {
  type: PolicyType;
  max_seats?: number;
  features?: string[];
  lease_ttl_seconds?: number;
  grace_days?: number;
  seat_assignment?: 'auto' | 'manual';
  /**
   * The Template Licensing face's `auto_update` (stored and reported; this server pushes no
   * updates itself): absent is false.
   */
  auto_update?: boolean;
  /** Quota name → its limit in units (installations); see quota-rules.ts. */
  quotas?: Record<string, number>;
  /** Longest borrow (offline lease) in hours; 0 or absent: no borrowing. */
  max_borrow_hours?: number;
  /** Seats that may be borrowed at once; absent: any of max_seats. */
  max_borrowed_seats?: number;
  /** Grants allowed past max_seats, each marked `overdraft` (billed as a true-up); absent: 0. */
  overdraft_seats?: number;
  /** Instances (instance_id) one subject may run on its one lease; absent: no limit. */
  max_instances_per_subject?: number;
}

export type StoredStatus = 'active' | 'suspended' | 'revoked';
export type EntitlementStatus = StoredStatus | 'pending' | 'expired' | 'grace';
/** Every derived status (deriveStatus), in the order lists and documents show them. */
export const ENTITLEMENT_STATUSES = [
  'active',
  'suspended',
  'revoked',
  'pending',
  'expired',
  'grace',
] as const satisfies readonly EntitlementStatus[];
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

/** A bound on one stored time (ms): each given comparison holds. */
export interface TimeBound {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

/**
 * deriveStatus turned into bounds on what is stored, so a store can filter a list by a derived
 * status without knowing the rule: at `now`, an entitlement has the status exactly when its
 * stored status is `stored` and each bound given holds. `graceEnd` is endsAt + graceDays(policy)
 * days (stores keep graceDays beside each entitlement for it).
 */
export interface StatusBounds {
  stored: StoredStatus;
  startsAt?: TimeBound;
  endsAt?: TimeBound;
  graceEnd?: TimeBound;
}

/** The bounds of a derived status at `now` (ms); see StatusBounds. */
export function statusBounds(status: EntitlementStatus, now: number): StatusBounds {
  switch (status) {
    case 'suspended':
    case 'revoked':
      return { stored: status };
    case 'pending':
      return { stored: 'active', startsAt: { gt: now } };
    case 'active':
      return { stored: 'active', startsAt: { lte: now }, endsAt: { gte: now } };
    case 'grace':
      return {
        stored: 'active',
        startsAt: { lte: now },
        endsAt: { lt: now },
        graceEnd: { gte: now },
      };
    case 'expired':
      return { stored: 'active', startsAt: { lte: now }, graceEnd: { lt: now } };
  }
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

export type LeaseState = 'active' | 'released' | 'revoked' | 'expired';

/** A lease: one subject's hold on an entitlement, renewed by the client until released or ended. */
export interface Lease {
  /** Insertion order (the list cursor); 0 until stored. */
  seq: number;
  id: string;
  entitlementId: string;
  subjectType: string;
  /** The subject id as the request that created the lease spelt it (display, token `sub`). */
  subjectId: string;
  /** Its canonical key (src/subjects.ts): what lookups compare. */
  subjectKey: string;
  features: string[];
  /** Epoch ms, like every time below. */
  grantedAt: number;
  renewedAt: number;
  expiresAt: number;
  state: LeaseState;
  endedAt: number | null;
  /** Granted past max_seats within overdraft_seats (fixed at grant). */
  overdraft: boolean;
  /** Borrowed for offline use: expiresAt is the end of the borrow. */
  borrowed: boolean;
}

/** A lease as the admin list shows it: with its entitlement's tenant and product. */
export type ListedLease = Lease & { tenantId: string; productId: string };

/** A named seat of a per_user or per_machine entitlement. */
export interface Seat {
  id: string;
  entitlementId: string;
  subjectType: string;
  /** As first seen (the assignment or the first lease), for display. */
  subjectId: string;
  /** Canonical (src/subjects.ts): one seat per key and entitlement. */
  subjectKey: string;
  assignedAt: number;
  /** `auto` (taken by a lease) or the actor who assigned it. */
  assignedBy: string;
  /** Taken past max_seats within overdraft_seats: its holder's leases are overdraft leases. */
  overdraft?: boolean;
}

export type LeaseEventKind = 'grant' | 'renew' | 'release' | 'expire' | 'revoke' | 'deny';

/** One row of the lease event log, which usage reports are computed from. */
export interface LeaseEvent {
  at: number;
  kind: LeaseEventKind;
  entitlementId: string | null;
  leaseId: string | null;
  subjectType: string | null;
  /** The subject's canonical key: the event log only counts subjects. */
  subjectKey: string | null;
  /** The entitlement's active-lease counter after this event, when it changed it. */
  activeAfter?: number | null;
  /** A denial's error code, or why a lease was revoked (`seat_revoked`). */
  reason?: string | null;
  /** grant / renew: EVENT_OVERDRAFT | EVENT_BORROWED bits; absent on plain ones. */
  flags?: number | null;
}

/** LeaseEvent flags: the lease was granted past max_seats (counted for the vendor's true-up). */
export const EVENT_OVERDRAFT = 1;
/** LeaseEvent flags: the lease is borrowed (offline). */
export const EVENT_BORROWED = 2;

/** An entitlement's counters, kept in step with its leases and seats by the services. */
export interface EntitlementCounters {
  /** Active lease rows, including ones whose time ran out and that no sweep has marked yet. */
  activeLeases: number;
  seatsAssigned: number;
}

/** Usage figures over a time window, from the lease event log. */
export interface WindowStats {
  grants: number;
  renewals: number;
  releases: number;
  denials: number;
  /** The most leases held at once (0 when none was granted or ended in the window). */
  peak: number;
  /** Distinct subjects (by canonical key) that leased or renewed. */
  uniqueSubjects: number;
  /** New leases granted past max_seats (overdraft): what the vendor bills as a true-up. */
  overdraftGrants: number;
  /** Leases borrowed (new or converted to a borrow). */
  borrows: number;
}

/** One UTC day of usage. */
export interface DayStats extends WindowStats {
  /** 00:00 UTC of the day, in ms. */
  day: number;
}

/**
 * One consumed unit of a quota: an installation or activation (a dashboard, a template) recorded
 * against an entitlement. Removing it returns the unit.
 */
export interface Installation {
  /** `inst_…`. */
  id: string;
  entitlementId: string;
  /** The quota's name, a key of policy_json.quotas (`dashboards`). */
  quota: string;
  /** For people: `My Sales Dashboard`. */
  name: string;
  /** A JSON object, at most METADATA_MAX_BYTES as JSON (quota-rules.ts). */
  metadata: Record<string, unknown>;
  /** The installed version (`1.2.0`), when known. */
  version: string | null;
  /** Who installed (a subject id), when known. */
  principalId: string | null;
  /** The client's idempotency key, unique per entitlement. */
  idempotencyKey: string | null;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
}

/** An installation as stored: with its insertion order (the list cursor). */
export type StoredInstallation = Installation & { seq: number };

/** A quota of an entitlement now: `remaining` is max(0, limit − used) (a lowered limit can be under use). */
export interface QuotaState {
  quota: string;
  limit: number;
  used: number;
  remaining: number;
}

/** A page of a list: `nextCursor` is null on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

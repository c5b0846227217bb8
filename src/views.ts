/**
 * The wire shapes: every JSON object the API answers and the CLI's --json prints (snake_case,
 * RFC 3339 times), and the usage CSV, made from domain objects here and nowhere else, so both
 * faces show the same thing. Services return domain objects; a route or command picks the view.
 */
import { toIso } from './clock.ts';
import type { ServerInfo } from './data-dir.ts';
import type {
  ApiToken,
  Entitlement,
  Installation,
  Lease,
  Page,
  QuotaState,
  Seat,
} from './domain/types.ts';
import { deriveStatus, hasNamedSeats } from './domain/types.ts';
import type { ImportResult } from './domain/entitlements.ts';
import { termWarnings, type TermWarning } from './domain/entitlement-rules.ts';
import type { IssuedLease, SubjectStatus, UsageNow } from './domain/leases.ts';
import type { LeaseCheck } from './domain/lease-rules.ts';
import type { DailyUsage, UsageReport } from './domain/usage.ts';
import type { Principal } from './domain/api-tokens.ts';
import type { TimeStatus } from './domain/time-guard.ts';
import { ROLE_PERMISSIONS, type Permission } from './http/permissions.ts';

const iso = (ms: number | null) => (ms === null ? null : toIso(ms));

/** A list page: `{data: [...], next_cursor}` (null on the last page). */
export function pageView<T, V>(page: Page<T>, view: (item: T) => V) {
  return { data: page.items.map(view), next_cursor: page.nextCursor };
}

/** An entitlement, its status derived at `now` (ms). */
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

/**
 * Warnings as the wire gives them: `[{code, message}]`, e.g. `{"code": "already_expired",
 * "message": "ends_at 2024-12-31T23:59:59Z is in the past: the entitlement is expired on arrival"}`.
 */
export function warningsView(warnings: TermWarning[]) {
  return warnings.map((w) => ({
    code: w.code,
    message:
      w.code === 'already_expired'
        ? `ends_at ${toIso(w.at)} is in the past: the entitlement is expired on arrival`
        : `starts_at ${toIso(w.at)} is in the future: no lease is granted before then (status pending)`,
  }));
}

/**
 * An entitlement just created (POST /v1/entitlements, entitlements create): the entitlement, and
 * `warnings` when its term has already ended or not yet begun at `now` (ms).
 */
export function createdEntitlementView(e: Entitlement, now: number) {
  const warnings = termWarnings(e, now);
  return {
    ...entitlementView(e, now),
    ...(warnings.length ? { warnings: warningsView(warnings) } : {}),
  };
}

/**
 * The quotas of a policy as answers show them, by name: `{dashboards: {limit, used, remaining}}`.
 * An answer carries the field only when the policy has quotas (`quotas` below is then spread in).
 */
export function quotasView(states: readonly QuotaState[]) {
  return Object.fromEntries(
    states.map((q) => [q.quota, { limit: q.limit, used: q.used, remaining: q.remaining }]),
  );
}

/** `{quotas: …}` when the entitlement's policy has quotas, else nothing (older answers unchanged). */
function quotasField(e: Entitlement, states: readonly QuotaState[]) {
  return e.policy.quotas === undefined ? {} : { quotas: quotasView(states) };
}

/** One entitlement shown on its own: with its use right now (and its quotas', when it has any). */
export function entitlementDetailView(
  e: Entitlement,
  now: number,
  usage: UsageNow,
  quotas: readonly QuotaState[],
) {
  return {
    ...entitlementView(e, now),
    usage: {
      active_leases: usage.activeLeases,
      seats_assigned: usage.seatsAssigned,
      max_seats: usage.maxSeats,
    },
    ...quotasField(e, quotas),
  };
}

/**
 * Could a lease be had now, and how many units of each quota are left (GET
 * /v1/entitlements/{id}/check, `entitlements check`). A new installation needs status `active`
 * and a unit remaining; after grace (status `expired`) the product's features are off.
 */
export function leaseCheckView(
  e: Entitlement,
  now: number,
  c: LeaseCheck,
  quotas: readonly QuotaState[],
) {
  return {
    entitlement_id: e.id,
    status: deriveStatus(e, now),
    can_lease: c.canLease,
    remaining_seats: c.remainingSeats,
    reason: c.reason,
    ...quotasField(e, quotas),
  };
}

/** The 30-day usage report (GET /v1/entitlements/{id}/usage, `entitlements usage`). */
export function usageView(e: Entitlement, r: UsageReport) {
  return {
    entitlement_id: e.id,
    tenant_id: e.tenantId,
    product_id: e.productId,
    seats: { total: r.seats.total, assigned: r.seats.assigned, active_30d: r.seats.active30d },
    leases: {
      active: r.leases.active,
      peak_30d: r.leases.peak30d,
      ...(r.leases.borrowed !== undefined ? { borrowed: r.leases.borrowed } : {}),
    },
    activity: {
      grants_30d: r.activity.grants30d,
      denials_30d: r.activity.denials30d,
      unique_users_30d: r.activity.uniqueUsers30d,
      ...(r.activity.overdraftGrants30d !== undefined
        ? { overdraft_grants_30d: r.activity.overdraftGrants30d }
        : {}),
      ...(r.activity.borrows30d !== undefined ? { borrows_30d: r.activity.borrows30d } : {}),
    },
    ...quotasField(e, r.quotas),
  };
}

const CSV_HEADER = [
  'date',
  'entitlement_id',
  'tenant_id',
  'product_id',
  'grants',
  'renewals',
  'releases',
  'denials',
  'peak_concurrent',
  'unique_subjects',
  // Columns added later go at the end (before the quota ones), so scripts reading by position
  // keep working.
  'overdraft_grants',
  'borrows',
];

/** The CSV columns of each quota, after the lease columns: `quota_<name>_installed`, … */
const QUOTA_CSV_COLUMNS = ['installed', 'removed', 'in_use', 'limit'] as const;

/**
 * CSV (RFC 4180) of daily usage; ids are quoted when they hold a comma, quote or line break. A
 * policy with quotas adds four columns per quota (by name): installs and removals that day, the
 * units in use at its end (UTC), and the limit now.
 */
export function usageCsv(e: Entitlement, rows: DailyUsage[]): string {
  const cell = (v: string | number) => {
    const s = String(v);
    // A leading = + - @ would be a formula in a spreadsheet: prefix it so it stays text.
    const safe = /^[=+\-@]/.test(s) ? `'${s}` : s;
    return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
  };
  const quotas = Object.entries(e.policy.quotas ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  const header = [
    ...CSV_HEADER,
    ...quotas.flatMap(([name]) => QUOTA_CSV_COLUMNS.map((c) => `quota_${name}_${c}`)),
  ];
  const lines = [header.map(cell).join(',')];
  for (const r of rows) {
    const quotaCells = quotas.flatMap(([name, limit]) => {
      const q = r.quotas[name];
      return [q?.installed ?? 0, q?.removed ?? 0, q?.inUse ?? 0, limit];
    });
    lines.push(
      [
        new Date(r.day).toISOString().slice(0, 10),
        e.id,
        e.tenantId,
        e.productId,
        r.grants,
        r.renewals,
        r.releases,
        r.denials,
        r.peak,
        r.uniqueSubjects,
        r.overdraftGrants,
        r.borrows,
        ...quotaCells,
      ]
        .map(cell)
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** What a bulk import did, item by item. */
export function importResultView(r: ImportResult) {
  return {
    created: r.created,
    updated: r.updated,
    unchanged: r.unchanged,
    total: r.total,
    items: r.items.map((i) => ({
      index: i.index,
      entitlement_id: i.entitlementId,
      action: i.action,
      ...(i.warnings ? { warnings: warningsView(i.warnings) } : {}),
    })),
  };
}

/** An API token (never its secret), its status derived at `now` (ms). */
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

/** A token just made: the one answer that carries its secret. */
export function createdApiTokenView(t: { token: string; record: ApiToken }, now: number) {
  return { ...apiTokenView(t.record, now), token: t.token };
}

/**
 * GET /v1/whoami: the presented token (its name, role, tenant and what the role may do) and the
 * server's clock as the time guard sees it (`clock_suspect`: behind its high-water mark).
 */
export function whoamiView(p: Principal, name: string | null, clock: TimeStatus) {
  return {
    token_id: p.tokenId,
    name,
    role: p.role,
    tenant_id: p.tenantId,
    permissions: Array.from<Permission>(ROLE_PERMISSIONS[p.role]),
    server_time: toIso(clock.now),
    clock_suspect: clock.suspect,
  };
}

/** A lease; tenant_id and product_id when the list joined them in. */
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
    ...floatingFlags(l),
  };
}

// Shared by every plain lease answer: nothing allocated for it on the grant path.
const NO_FLAGS: { overdraft?: true; borrowed?: true } = Object.freeze({});

/** `overdraft: true` and `borrowed: true`, each only when so (plain answers keep their shape). */
function floatingFlags(l: Lease): { overdraft?: true; borrowed?: true } {
  if (!l.overdraft && !l.borrowed) return NO_FLAGS;
  return { ...(l.overdraft ? { overdraft: true } : {}), ...(l.borrowed ? { borrowed: true } : {}) };
}

/** The answer to a grant or renewal, as the seed shows it. */
export function issuedLeaseView(r: Pick<IssuedLease, 'lease' | 'token' | 'grace'>) {
  return {
    lease_id: r.lease.id,
    token: r.token,
    expires_at: toIso(r.lease.expiresAt),
    features: r.lease.features,
    ...(r.grace ? { grace: true } : {}),
    ...floatingFlags(r.lease),
  };
}

/** What the license status call shows for a subject (GET /v1/license/status). */
export function subjectStatusView(s: SubjectStatus, now: number) {
  const e = s.entitlement;
  return {
    entitlement_id: e.id,
    tenant_id: e.tenantId,
    status: deriveStatus(e, now),
    current_lease: s.lease
      ? { lease_id: s.lease.id, expires_at: toIso(s.lease.expiresAt), ...floatingFlags(s.lease) }
      : null,
    features: e.policy.features ?? [],
    usage: {
      concurrent_seats_used: s.leasesInUse,
      max_seats: e.policy.max_seats ?? null,
      // Says why concurrent_seats_used may pass max_seats: the grants past it are overdraft.
      ...(e.policy.overdraft_seats ? { overdraft_seats: e.policy.overdraft_seats } : {}),
      ...(hasNamedSeats(e.policy.type)
        ? { seats_assigned: s.seatsAssigned, seat_held: s.seat !== undefined }
        : {}),
      ...(s.queued > 0 ? { queued: s.queued } : {}),
    },
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

/** Seats assigned in one call (the bulk route, `seats assign`). */
export function seatsAssignedView(seats: Seat[]) {
  return { data: seats.map(seatView), assigned: seats.length };
}

/** A revoked seat, and the lease of its holder that ended with it (or null). */
export function seatRevokedView(r: { seat: Seat; endedLease: string | null }) {
  return { ...seatView(r.seat), revoked: true, ended_lease_id: r.endedLease };
}

/** The server's signing key, as clients fetch it to verify lease tokens. */
export function keysView(info: Pick<ServerInfo, 'kid' | 'public_key'>) {
  return { keys: [{ kid: info.kid, public_key: info.public_key, status: 'active' }] };
}

/** An installation (one unit of a quota). */
export function installationView(i: Installation) {
  return {
    installation_id: i.id,
    entitlement_id: i.entitlementId,
    quota: i.quota,
    name: i.name,
    metadata: i.metadata,
    version: i.version,
    principal_id: i.principalId,
    idempotency_key: i.idempotencyKey,
    created_at: toIso(i.createdAt),
    updated_at: toIso(i.updatedAt),
  };
}

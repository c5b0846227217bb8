import { AppError, type ErrorCode } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId, newSequentialId } from '../ids.ts';
import { decodeCursor, encodeCursor, SEQ_KEY } from './cursor.ts';
import type { Store } from '../storage/store.ts';
import type { Lease, Seat } from '../storage/leases.ts';
import type { Actor, Entitlement } from './types.ts';
import { DAY_MS, graceDays } from './types.ts';
import type { SigningKey } from '../tokens/keys.ts';
import { issueLeaseTokenAsync } from '../tokens/lease-token.ts';
import type { TimeGuard } from './time-guard.ts';
import { subjectKey } from '../subjects.ts';

export const SUBJECT_TYPES = ['user', 'machine'] as const;
export type SubjectType = (typeof SUBJECT_TYPES)[number];

export const DEFAULT_LEASE_TTL_SECONDS = 3600;
// Reclaiming expired leases at a full entitlement walks at most this many per grant (amortised O(1)).
const RECLAIM_BATCH = 256;
const SWEEP_BATCH = 1000;

export interface LeaseRequest {
  productId: string;
  tenantId: string;
  subjectType: SubjectType;
  subjectId: string;
  features?: string[] | undefined;
  entitlementId?: string | undefined;
}

/** A request with its subject's canonical key (src/subjects.ts), computed once per request. */
type KeyedRequest = LeaseRequest & { subjectKey: string };

export interface LeaseDeps {
  store: Store;
  clock: Clock;
  key: SigningKey;
  serverId: string;
  timeGuard: TimeGuard;
  defaultTtlSeconds?: number;
}

export interface IssuedLease {
  lease: Lease;
  entitlement: Entitlement;
  grace: boolean;
  token: string;
}

/** Refusals a client can get for a grant; each is also written as a `deny` event for usage reports. */
const DENIALS = new Set<ErrorCode>([
  'seats_exhausted',
  'seat_not_assigned',
  'feature_not_entitled',
  'entitlement_inactive',
  'not_found',
  'invalid_request',
]);
// When several entitlements could serve and all refuse, the most actionable reason wins.
// clock_suspect (a bundle-managed entitlement while the clock is behind) is no denial in usage
// reports, but it ranks first: it is the reason the vendor's entitlement did not serve.
const DENIAL_PRIORITY: ErrorCode[] = [
  'clock_suspect',
  'seats_exhausted',
  'seat_not_assigned',
  'feature_not_entitled',
  'invalid_request',
  'entitlement_inactive',
  'not_found',
];

const NAMED = new Set(['per_user', 'per_machine']);
// A vendor bundle setting (sync): the default lease lifetime on this server.
const VENDOR_TTL_KEY = 'default_lease_ttl_seconds';

/** Leases: grant, renew, release, revoke, status, and the sweep that marks expired ones. */
export function createLeaseService({
  store,
  clock,
  key,
  serverId,
  timeGuard,
  defaultTtlSeconds = DEFAULT_LEASE_TTL_SECONDS,
}: LeaseDeps) {
  const { leases, seats, entitlements } = store;

  /**
   * Is the entitlement usable now? Throws entitlement_inactive when it is not; returns true inside
   * the grace window, where only subjects that held on at the end of term may lease (see
   * `heldAtEnd`, checked by the caller: it needs the subject's seat or lease).
   */
  function usable(e: Entitlement, now: number): boolean {
    const inactive = (reason: string, message: string) =>
      new AppError('entitlement_inactive', message, { reason, entitlement_id: e.id });
    if (e.status === 'revoked') throw inactive('revoked', `${e.id} is revoked`);
    if (e.status === 'suspended') throw inactive('suspended', `${e.id} is suspended`);
    if (now < e.startsAt)
      throw inactive('pending', `${e.id} starts at ${new Date(e.startsAt).toISOString()}`);
    if (now <= e.endsAt) return false;
    if (now <= e.endsAt + graceDays(e.policy) * DAY_MS) return true;
    throw inactive('expired', `${e.id} expired at ${new Date(e.endsAt).toISOString()}`);
  }

  /**
   * The grace rule (README "Grace"): nobody new gets a lease after ends_at, by any route. A subject
   * may lease or renew in grace only if it held on at the end of term: for per_user / per_machine a
   * seat assigned at or before ends_at (a seat assigned later, by an admin, a bulk call or before a
   * bundle moved ends_at earlier, does not count); for concurrent / feature_based an active lease
   * granted at or before ends_at (refreshing it keeps it the same lease).
   */
  function heldAtEnd(e: Entitlement, lease: Lease | undefined, seat: Seat | undefined): boolean {
    return NAMED.has(e.policy.type)
      ? seat !== undefined && seat.assignedAt <= e.endsAt
      : lease !== undefined && lease.grantedAt <= e.endsAt;
  }

  function newcomerInGrace(e: Entitlement): AppError {
    const graceEnds = new Date(e.endsAt + graceDays(e.policy) * DAY_MS).toISOString();
    return new AppError(
      'entitlement_inactive',
      `${e.id} ended at ${new Date(e.endsAt).toISOString()}; during its grace period (until ${graceEnds}) only subjects that held a seat or lease at the end of term may lease`,
      { reason: 'expired', status: 'grace', entitlement_id: e.id, grace_ends_at: graceEnds },
    );
  }

  function checkSubjectType(e: Entitlement, subjectType: string): void {
    const want =
      e.policy.type === 'per_user' ? 'user' : e.policy.type === 'per_machine' ? 'machine' : null;
    if (want !== null && subjectType !== want) {
      throw new AppError(
        'invalid_request',
        `${e.id} is ${e.policy.type}: it leases to subject_type "${want}", not "${subjectType}"`,
        { entitlement_id: e.id },
      );
    }
  }

  function resolveFeatures(e: Entitlement, requested: string[] | undefined): string[] {
    const entitled = e.policy.features ?? [];
    if (requested === undefined) return [...entitled];
    const missing = requested.filter((f) => !entitled.includes(f));
    if (missing.length > 0) {
      throw new AppError('feature_not_entitled', `${e.id} does not include ${missing.join(', ')}`, {
        entitlement_id: e.id,
        features: missing,
        entitled,
      });
    }
    return [...new Set(requested)];
  }

  /** The lease lifetime when the policy sets none: the vendor's bundle setting, else the server's. */
  function fallbackTtlSeconds(): number {
    const vendor = Number(store.state.get(VENDOR_TTL_KEY));
    return Number.isInteger(vendor) && vendor > 0 ? vendor : defaultTtlSeconds;
  }

  function leaseExpiry(e: Entitlement, now: number): number {
    const ttl = (e.policy.lease_ttl_seconds ?? fallbackTtlSeconds()) * 1000;
    // Never past the term plus grace: only holders reach grace, and they may renew until it ends.
    const expiresAt = Math.min(now + ttl, e.endsAt + graceDays(e.policy) * DAY_MS);
    // A token lives whole seconds and must end at least one second after issue (buildLeaseClaims);
    // refused here, before the commit, so the signing after it cannot fail with a seat taken.
    if (Math.floor(expiresAt / 1000) <= Math.floor(now / 1000)) {
      throw new AppError(
        'entitlement_inactive',
        `${e.id} ends at ${new Date(expiresAt).toISOString()}, less than a second from now: too late for a lease`,
        { reason: 'expired', entitlement_id: e.id },
      );
    }
    return expiresAt;
  }

  function endLease(l: Lease, state: 'released' | 'revoked' | 'expired', now: number): boolean {
    if (!leases.end(l.id, state, now)) return false;
    const active = leases.bumpActive(l.entitlementId, -1);
    const kind = state === 'released' ? 'release' : state === 'revoked' ? 'revoke' : 'expire';
    leases.event({
      at: now,
      kind,
      entitlementId: l.entitlementId,
      leaseId: l.id,
      subjectType: l.subjectType,
      subjectKey: l.subjectKey,
      activeAfter: active,
    });
    return true;
  }

  function reclaimExpired(entitlementId: string | null, now: number, limit: number): number {
    let n = 0;
    for (const l of leases.expired(entitlementId, now, limit)) if (endLease(l, 'expired', now)) n++;
    return n;
  }

  /**
   * One entitlement, one subject (matched by canonical key, so `alice` and `Alice` share one lease
   * and one seat): refresh their lease or take a seat. Throws a denial.
   */
  function grantOn(
    e: Entitlement,
    req: KeyedRequest,
    now: number,
  ): { lease: Lease; grace: boolean } {
    checkSubjectType(e, req.subjectType);
    let current = leases.activeFor(e.id, req.subjectType, req.subjectKey);
    if (current && current.expiresAt <= now) {
      endLease(current, 'expired', now);
      current = undefined;
    }
    const named = NAMED.has(e.policy.type);
    const seat = named ? seats.find(e.id, req.subjectType, req.subjectKey) : undefined;
    const grace = usable(e, now);
    if (grace && !heldAtEnd(e, current, seat)) throw newcomerInGrace(e);
    const features = resolveFeatures(e, req.features);
    const expiresAt = leaseExpiry(e, now);

    if (current) {
      // The same subject asking again: the same lease, refreshed, never a second seat.
      leases.refresh(current.id, now, expiresAt, features);
      leases.event({
        at: now,
        kind: 'renew',
        entitlementId: e.id,
        leaseId: current.id,
        subjectType: req.subjectType,
        subjectKey: req.subjectKey,
      });
      return { lease: { ...current, renewedAt: now, expiresAt, features }, grace };
    }

    const max = e.policy.max_seats;
    if (named && !seat) {
      if (e.policy.seat_assignment === 'manual') {
        throw new AppError(
          'seat_not_assigned',
          `${req.subjectType} ${req.subjectId} holds no seat on ${e.id}, and its seats are assigned by an admin`,
          { entitlement_id: e.id },
        );
      }
      if (leases.counters(e.id).seatsAssigned >= max!) {
        throw new AppError('seats_exhausted', `all ${max} seats of ${e.id} are assigned`, {
          entitlement_id: e.id,
          max_seats: max,
        });
      }
      seats.insert({
        id: newId('seat'),
        entitlementId: e.id,
        subjectType: req.subjectType,
        subjectId: req.subjectId,
        subjectKey: req.subjectKey,
        assignedAt: now,
        assignedBy: 'auto',
      });
      leases.bumpSeats(e.id, 1);
    } else if (e.policy.type === 'concurrent') {
      // The counter includes leases whose time ran out but no sweep has marked: reclaim those first,
      // so an expired lease frees its seat at once.
      let active = leases.counters(e.id).activeLeases;
      if (active >= max!) active -= reclaimExpired(e.id, now, RECLAIM_BATCH);
      if (active >= max!) {
        throw new AppError('seats_exhausted', `all ${max} seats of ${e.id} are in use`, {
          entitlement_id: e.id,
          max_seats: max,
        });
      }
    }

    const lease: Lease = {
      seq: 0,
      id: newSequentialId('lease', now),
      entitlementId: e.id,
      subjectType: req.subjectType,
      subjectId: req.subjectId,
      subjectKey: req.subjectKey,
      features,
      grantedAt: now,
      renewedAt: now,
      expiresAt,
      state: 'active',
      endedAt: null,
    };
    leases.insert(lease);
    const active = leases.bumpActive(e.id, 1);
    leases.event({
      at: now,
      kind: 'grant',
      entitlementId: e.id,
      leaseId: lease.id,
      subjectType: req.subjectType,
      subjectKey: req.subjectKey,
      activeAfter: active,
    });
    return { lease, grace };
  }

  /**
   * The deterministic choice among the tenant's entitlements for the product: an explicit
   * entitlement_id; else the one the subject already leases on; else one it holds a seat on; else
   * the others by end of term (soonest first), then by age.
   */
  function rank(req: KeyedRequest): readonly Entitlement[] {
    if (req.entitlementId !== undefined) {
      const e = entitlements.get(req.entitlementId);
      if (!e || e.tenantId !== req.tenantId || e.productId !== req.productId) {
        throw new AppError(
          'not_found',
          `no entitlement ${req.entitlementId} for tenant ${req.tenantId} and product ${req.productId}`,
        );
      }
      return [e];
    }
    const all = entitlements.candidates(req.tenantId, req.productId);
    if (all.length === 0)
      throw new AppError(
        'not_found',
        `no entitlement for tenant ${req.tenantId} and product ${req.productId}`,
      );
    if (all.length === 1) return all;
    const score = (e: Entitlement) =>
      leases.activeFor(e.id, req.subjectType, req.subjectKey)
        ? 0
        : NAMED.has(e.policy.type) && seats.find(e.id, req.subjectType, req.subjectKey)
          ? 1
          : 2;
    return all
      .map((e, i) => ({ e, s: score(e), i }))
      .sort((a, b) => a.s - b.s || a.i - b.i)
      .map((x) => x.e);
  }

  function grantSync(
    req: KeyedRequest,
    now: number,
    clockBehind: boolean,
  ): { lease: Lease; entitlement: Entitlement; grace: boolean } {
    const candidates = rank(req);
    let best: AppError | undefined;
    for (const e of candidates) {
      try {
        // The clock guard protects the vendor's terms only (DESIGN "Time"): manual entitlements serve.
        if (clockBehind && e.source === 'bundle') throw timeGuard.refusal(e.id, now);
        // No savepoint needed: grantOn writes nothing before a refusal but legitimate bookkeeping
        // (marking expired leases), which stands whichever entitlement serves in the end.
        const r = grantOn(e, req, now);
        return { ...r, entitlement: e };
      } catch (err) {
        if (!(err instanceof AppError) || !(DENIALS.has(err.code) || err.code === 'clock_suspect'))
          throw err;
        if (!best || DENIAL_PRIORITY.indexOf(err.code) < DENIAL_PRIORITY.indexOf(best.code))
          best = err;
      }
    }
    throw best!;
  }

  function sign(lease: Lease, e: Entitlement, grace: boolean, now: number): Promise<string> {
    return issueLeaseTokenAsync(key, {
      serverId,
      subjectType: lease.subjectType,
      subjectId: lease.subjectId,
      productId: e.productId,
      leaseId: lease.id,
      tenantId: e.tenantId,
      entitlementId: e.id,
      policyType: e.policy.type,
      features: lease.features,
      issuedAtMs: now,
      expiresAtMs: lease.expiresAt,
      grace,
    });
  }

  function mustGetLease(id: string): Lease {
    const l = leases.get(id);
    if (!l) throw new AppError('not_found', `no lease ${id}`);
    return l;
  }

  function renewSync(
    id: string,
    now: number,
    clockBehind: boolean,
  ): { lease: Lease; entitlement: Entitlement; grace: boolean } {
    const l = mustGetLease(id);
    if (l.state === 'released' || l.state === 'revoked') {
      throw new AppError('lease_released', `lease ${id} was ${l.state}; request a new lease`, {
        state: l.state,
      });
    }
    if (l.state === 'expired' || l.expiresAt <= now) {
      throw new AppError(
        'lease_expired',
        `lease ${id} expired at ${new Date(l.expiresAt).toISOString()}; request a new lease`,
        { expired_at: new Date(l.expiresAt).toISOString() },
      );
    }
    const e = entitlements.get(l.entitlementId)!;
    if (clockBehind && e.source === 'bundle') throw timeGuard.refusal(e.id, now);
    const grace = usable(e, now);
    // In grace only: the one extra lookup (the seat) is never paid on the normal path.
    if (
      grace &&
      !heldAtEnd(
        e,
        l,
        NAMED.has(e.policy.type) ? seats.find(e.id, l.subjectType, l.subjectKey) : undefined,
      )
    )
      throw newcomerInGrace(e);
    // A renewal keeps the features the entitlement still grants (an admin may have removed some).
    const entitled = e.policy.features ?? [];
    const features = l.features.filter((f) => entitled.includes(f));
    const expiresAt = leaseExpiry(e, now);
    leases.refresh(l.id, now, expiresAt, features);
    leases.event({
      at: now,
      kind: 'renew',
      entitlementId: e.id,
      leaseId: l.id,
      subjectType: l.subjectType,
      subjectKey: l.subjectKey,
    });
    return { lease: { ...l, renewedAt: now, expiresAt, features }, entitlement: e, grace };
  }

  return {
    /**
     * Grants (or refreshes) a lease. The check and the grant run in one IMMEDIATE transaction
     * shared with concurrent grants (group commit); the token is signed after the commit, off the
     * main thread.
     */
    async grant(request: LeaseRequest): Promise<IssuedLease> {
      // The subject's canonical key, once per request: one short normalize + fold (src/subjects.ts).
      const req: KeyedRequest = { ...request, subjectKey: subjectKey(request.subjectId) };
      const outcome = await store.batch(() => {
        const now = clock.now();
        // Never throws for the clock; may write the start or end of an episode, which must commit:
        // so every refusal below is returned, not thrown.
        const clockBehind = timeGuard.assess(now);
        try {
          return { ok: true as const, now, ...grantSync(req, now, clockBehind) };
        } catch (err) {
          if (err instanceof AppError && err.code === 'clock_suspect')
            return { ok: false as const, error: err };
          if (err instanceof AppError && DENIALS.has(err.code)) {
            const entId =
              typeof err.details.entitlement_id === 'string' ? err.details.entitlement_id : null;
            leases.event({
              at: now,
              kind: 'deny',
              entitlementId: entId,
              leaseId: null,
              subjectType: req.subjectType,
              subjectKey: req.subjectKey,
              reason: err.code,
            });
            return { ok: false as const, error: err };
          }
          throw err;
        }
      });
      if (!outcome.ok) throw outcome.error;
      return {
        lease: outcome.lease,
        entitlement: outcome.entitlement,
        grace: outcome.grace,
        token: await sign(outcome.lease, outcome.entitlement, outcome.grace, outcome.now),
      };
    },

    async renew(id: string): Promise<IssuedLease> {
      const r = await store.batch(() => {
        const now = clock.now();
        const clockBehind = timeGuard.assess(now);
        try {
          return { ok: true as const, now, ...renewSync(id, now, clockBehind) };
        } catch (err) {
          // Returned, not thrown, so an episode the guard just recorded commits (renewSync writes nothing before refusing).
          if (err instanceof AppError) return { ok: false as const, error: err };
          throw err;
        }
      });
      if (!r.ok) throw r.error;
      return {
        lease: r.lease,
        entitlement: r.entitlement,
        grace: r.grace,
        token: await sign(r.lease, r.entitlement, r.grace, r.now),
      };
    },

    /** Releases a lease: frees its seat. Idempotent: releasing again answers the lease as it is. */
    release(id: string): Promise<Lease> {
      return store.batch(() => {
        const now = clock.now();
        const l = mustGetLease(id);
        if (l.state !== 'active') return l;
        const state = l.expiresAt <= now ? 'expired' : 'released';
        endLease(l, state, now);
        return { ...l, state, endedAt: now };
      });
    },

    /** An admin ends a lease at once; its next renewal is refused. */
    revoke(id: string, actor: Actor): Lease {
      return store.tx(() => {
        const now = clock.now();
        const l = mustGetLease(id);
        if (l.state !== 'active')
          throw new AppError('conflict', `lease ${id} is ${l.state} already`, { state: l.state });
        endLease(l, 'revoked', now);
        store.audit.append({
          at: now,
          actor,
          action: 'lease.revoke',
          targetType: 'lease',
          targetId: id,
          details: { entitlement_id: l.entitlementId, subject: `${l.subjectType}:${l.subjectId}` },
        });
        return { ...l, state: 'revoked' as const, endedAt: now };
      });
    },

    get: mustGetLease,

    /**
     * Could a lease be granted now? With a subject (any spelling of it), answers for that subject (in
     * grace only one that held on at the end of term; manual seats need an assignment); without
     * one, for a newcomer.
     */
    check(e: Entitlement, subject?: { subjectType: string; subjectId: string }) {
      const now = clock.now();
      const named = NAMED.has(e.policy.type);
      const counters = leases.counters(e.id);
      const live = leases.liveCount(e.id, now);
      const key = subject ? subjectKey(subject.subjectId) : '';
      const found = subject ? leases.activeFor(e.id, subject.subjectType, key) : undefined;
      const lease = found !== undefined && found.expiresAt > now ? found : undefined;
      const seat = subject && named ? seats.find(e.id, subject.subjectType, key) : undefined;
      const holder = lease !== undefined || seat !== undefined;
      const max = e.policy.max_seats;
      const remaining =
        max === undefined ? null : Math.max(0, max - (named ? counters.seatsAssigned : live));
      let reason: string | null = null;
      try {
        if (usable(e, now) && !heldAtEnd(e, lease, seat)) throw newcomerInGrace(e);
      } catch (err) {
        reason = err instanceof AppError ? String(err.details.reason ?? err.code) : 'internal';
      }
      if (reason === null && e.source === 'bundle' && timeGuard.status().suspect)
        reason = 'clock_suspect';
      if (reason === null && !holder) {
        if (named && e.policy.seat_assignment === 'manual') reason = 'seat_not_assigned';
        else if (remaining === 0) reason = 'seats_exhausted';
      }
      return { can_lease: reason === null, remaining_seats: remaining, reason };
    },

    /** Use right now: leases in force (not merely unswept), named seats, the limit. */
    usageNow(e: Entitlement) {
      return {
        active_leases: leases.liveCount(e.id, clock.now()),
        seats_assigned: leases.counters(e.id).seatsAssigned,
        max_seats: e.policy.max_seats ?? null,
      };
    },

    /** Marks leases whose time has passed as expired and records the events. Returns how many. */
    sweep(): number {
      let total = 0;
      for (;;) {
        const n = store.tx(() => reclaimExpired(null, clock.now(), SWEEP_BATCH));
        total += n;
        if (n < SWEEP_BATCH) return total;
      }
    },

    list(filter: {
      entitlementId?: string | undefined;
      tenantId?: string | undefined;
      productId?: string | undefined;
      subjectType?: string | undefined;
      subjectId?: string | undefined;
      cursor?: string | undefined;
      limit?: number | undefined;
    }) {
      const limit = filter.limit ?? 50;
      const afterSeq =
        filter.cursor === undefined ? 0 : Number(decodeCursor('l', filter.cursor, SEQ_KEY));
      const { subjectId, ...rest } = filter;
      const rows = leases.list({
        ...rest,
        subjectKey: subjectId === undefined ? undefined : subjectKey(subjectId),
        afterSeq,
        limit: limit + 1,
        now: clock.now(),
      });
      const more = rows.length > limit;
      const items = more ? rows.slice(0, limit) : rows;
      return { items, nextCursor: more ? encodeCursor('l', items.at(-1)!.seq) : null };
    },

    /**
     * What the seed's status call shows for a subject: the entitlement it leases on now, else holds
     * a seat on, else leased on last; else, when only one tenant has the product, that tenant's
     * first by the grant rule. Several tenants and no tie to the subject: tenant_id is required.
     */
    status(q: {
      productId: string;
      subjectType: string;
      subjectId: string;
      tenantId?: string | undefined;
    }) {
      const now = clock.now();
      // Any spelling of the subject finds its lease and seat.
      const key = subjectKey(q.subjectId);
      const all =
        q.tenantId !== undefined
          ? entitlements.candidates(q.tenantId, q.productId)
          : entitlements.candidatesForProduct(q.productId);
      if (all.length === 0)
        throw new AppError(
          'not_found',
          `no entitlement for product ${q.productId}${q.tenantId ? ` and tenant ${q.tenantId}` : ''}`,
        );
      let chosen: Entitlement | undefined;
      let lease: Lease | undefined;
      for (const e of all) {
        const l = leases.activeFor(e.id, q.subjectType, key);
        if (l && l.expiresAt > now) {
          chosen = e;
          lease = l;
          break;
        }
      }
      chosen ??= all.find((e) => NAMED.has(e.policy.type) && seats.find(e.id, q.subjectType, key));
      if (!chosen) {
        const last = leases.lastEntitlementOf(
          all.map((e) => e.id),
          q.subjectType,
          key,
        );
        chosen = all.find((e) => e.id === last);
      }
      if (!chosen) {
        // Nothing ties the subject to an entitlement: only a single tenant's answer is meaningful.
        if (new Set(all.map((e) => e.tenantId)).size > 1) {
          throw new AppError(
            'invalid_request',
            `several tenants have entitlements for ${q.productId}; pass tenant_id`,
            {
              issues: [
                { path: 'tenant_id', message: 'required when several tenants have the product' },
              ],
            },
          );
        }
        chosen = all[0]!;
      }
      const counters = leases.counters(chosen.id);
      return {
        entitlement: chosen,
        lease,
        seat: NAMED.has(chosen.policy.type) ? seats.find(chosen.id, q.subjectType, key) : undefined,
        leasesInUse: leases.liveCount(chosen.id, now),
        seatsAssigned: counters.seatsAssigned,
      };
    },
  };
}

export type LeaseService = ReturnType<typeof createLeaseService>;

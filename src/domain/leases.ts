import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId, newSequentialId } from '../ids.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, encodeCursor, pageOf, SEQ_KEY } from './cursor.ts';
import type { Store } from './store.ts';
import { endLease as endLeaseRow } from './lease-end.ts';
import type { Actor, Entitlement, Lease, ListedLease, Page, Seat, SubjectType } from './types.ts';
import { EVENT_BORROWED, EVENT_OVERDRAFT, hasNamedSeats, policySubjectType } from './types.ts';
import {
  borrowExpiry,
  checkBorrowLeft,
  checkInstanceLeft,
  checkSeatLeft,
  checkSeatSelfService,
  checkSubjectType,
  concurrentFull,
  grantedFeatures,
  heldAtEnd,
  inGrace,
  isDenial,
  isSeatShortage,
  leaseCheck,
  leaseExpiry,
  moreActionable,
  newcomerInGrace,
  renewedFeatures,
  seatsInUse,
  triesNextCandidate,
  type LeaseCheck,
} from './lease-rules.ts';
import type { SigningKey } from '../tokens/keys.ts';
import { issueLeaseTokenAsync } from '../tokens/lease-token.ts';
import type { TimeGuard } from './time-guard.ts';
import { subjectKey } from '../subjects.ts';
import {
  createLeaseQueue,
  MAX_WAIT_SECONDS,
  type QueueLimits,
  type Waiter,
} from './lease-queue.ts';

export { SUBJECT_TYPES, type SubjectType } from './types.ts';

export const DEFAULT_LEASE_TTL_SECONDS = 3600;
// Reclaiming expired leases at a full entitlement walks at most this many per grant (amortised O(1)).
const RECLAIM_BATCH = 256;
const SWEEP_BATCH = 1000;
/** When the next expiry of an entitlement with waiters cannot be read, its head waiter is tried again after this (ms). */
const EXPIRY_READ_RETRY_MS = 1000;

export interface LeaseRequest {
  productId: string;
  tenantId: string;
  subjectType: SubjectType;
  subjectId: string;
  features?: string[] | undefined;
  entitlementId?: string | undefined;
  /** Borrow for offline use (README "Floating extras"): the lease lasts this many hours. */
  borrowHours?: number | undefined;
  /** One instance of the subject among several sharing its lease and seat. */
  instanceId?: string | undefined;
  /** Wait up to this many seconds, first come first served, when every seat is in use. */
  waitSeconds?: number | undefined;
}

/** A request with its subject's canonical key (src/subjects.ts), computed once per request. */
type KeyedRequest = LeaseRequest & { subjectKey: string; queued?: true };

/**
 * Watches the client of a waiting request: calls `onGone` if it disconnects before its answer;
 * returns the function that stops watching.
 */
export type ClientGone = (onGone: () => void) => () => void;

export interface LeaseDeps {
  store: Store;
  clock: Clock;
  key: SigningKey;
  serverId: string;
  timeGuard: TimeGuard;
  defaultTtlSeconds?: number;
  /** Bounds of the lease queue (wait_seconds); defaults in lease-queue.ts. */
  queueLimits?: QueueLimits;
  /**
   * Waiters are tried again at least this often (ms): other processes share the store and free
   * seats this process does not hear of (PostgreSQL). Undefined: only the next expiry and this
   * process's own releases wake them (SQLite: one serving process).
   */
  queueRecheckMs?: number | undefined;
}

/** An entitlement's use right now (see usageNow). */
export interface UsageNow {
  activeLeases: number;
  seatsAssigned: number;
  maxSeats: number | null;
}

/** What the status call shows for a subject (see status). */
export interface SubjectStatus {
  entitlement: Entitlement;
  /** The subject's lease in force on it, if any. */
  lease: Lease | undefined;
  /** Its seat on it (named-seat policies only), if any. */
  seat: Seat | undefined;
  leasesInUse: number;
  seatsAssigned: number;
  /** Requests waiting for a seat on it (wait_seconds). */
  queued: number;
}

export interface IssuedLease {
  lease: Lease;
  entitlement: Entitlement;
  grace: boolean;
  token: string;
}

/** A grant or renew event's flags for a lease (EVENT_OVERDRAFT, EVENT_BORROWED). */
function eventFlags(l: Lease): number {
  return (l.overdraft ? EVENT_OVERDRAFT : 0) | (l.borrowed ? EVENT_BORROWED : 0);
}

// A vendor bundle setting (sync): the default lease lifetime on this server.
const VENDOR_TTL_KEY = 'default_lease_ttl_seconds';

/**
 * Leases: grant, renew, release, revoke, status, and the sweep that marks expired ones. The rules
 * are lease-rules.ts; this is their orchestration: read, decide, write. Besides the codes each
 * function lists, a write may fail in the store (busy, full or read-only disk).
 */
/**
 * The details of a lease refused for want of an entitlement: where an admin sees what the tenant
 * does hold (a tenant or product id mistyped in the client's configuration is the usual cause).
 * Built on the refusal only: a grant never calls it.
 */
function noEntitlementDetails(req: { tenantId: string; productId: string }) {
  return {
    tenant_id: req.tenantId,
    product_id: req.productId,
    hint: `the tenant's entitlements: GET /v1/entitlements?tenant_id=${encodeURIComponent(req.tenantId)}`,
  };
}

export function createLeaseService({
  store,
  clock,
  key,
  serverId,
  timeGuard,
  defaultTtlSeconds = DEFAULT_LEASE_TTL_SECONDS,
  queueLimits,
  queueRecheckMs,
}: LeaseDeps) {
  const { leases, seats, entitlements } = store;

  /** The lease lifetime when the policy sets none: the vendor's bundle setting, else the server's. */
  function fallbackTtlSeconds(): number {
    const vendor = Number(store.state.get(VENDOR_TTL_KEY));
    return Number.isInteger(vendor) && vendor > 0 ? vendor : defaultTtlSeconds;
  }

  /** When a lease granted or renewed now ends (see leaseExpiry in lease-rules.ts). */
  function expiryOf(e: Entitlement, now: number): number {
    return leaseExpiry(e, now, e.policy.lease_ttl_seconds ?? fallbackTtlSeconds());
  }

  function endLease(l: Lease, state: 'released' | 'revoked' | 'expired', now: number): boolean {
    return endLeaseRow(leases, l, state, now);
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
    const named = hasNamedSeats(e.policy.type);
    const seat = named ? seats.find(e.id, req.subjectType, req.subjectKey) : undefined;
    const grace = inGrace(e, now);
    if (grace && !heldAtEnd(e, current, seat)) throw newcomerInGrace(e);
    const features = grantedFeatures(e, req.features);
    const expiresAt =
      req.borrowHours === undefined ? expiryOf(e, now) : borrowExpiry(e, now, req.borrowHours);

    if (current) {
      // Borrowed, shared or about to be: the rarer refresh, which never shortens the lease.
      if (req.borrowHours !== undefined || req.instanceId !== undefined || current.borrowed)
        return { lease: refreshFloating(e, current, req, now, expiresAt, features), grace };
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

    // Counted live on borrow requests only (an index range): expired borrows never count, and
    // however a lease ends (release, revoke, seat revoke, sweep) no stored counter can drift.
    if (req.borrowHours !== undefined) checkBorrowLeft(e, leases.liveBorrowedCount(e.id, now));
    let overdraft = seat?.overdraft === true;
    if (named && !seat) {
      checkSeatSelfService(e, req);
      overdraft = checkSeatLeft(e, leases.counters(e.id).seatsAssigned);
      seats.insert({
        id: newId('seat'),
        entitlementId: e.id,
        subjectType: req.subjectType,
        subjectId: req.subjectId,
        subjectKey: req.subjectKey,
        assignedAt: now,
        assignedBy: 'auto',
        overdraft,
      });
      leases.bumpSeats(e.id, 1);
    } else if (e.policy.type === 'concurrent') {
      // While requests wait for a seat, a freed one is theirs, in arrival order: a newcomer
      // (not a waiter being served) is refused, and may queue behind them.
      if (queue.size !== 0 && req.queued !== true && queue.has(e.id)) throw seatsInUse(e);
      const max = e.policy.max_seats!;
      // The counter includes leases whose time ran out but no sweep has marked: reclaim those first,
      // so an expired lease frees its seat at once (and no grant is an overdraft needlessly).
      let active = leases.counters(e.id).activeLeases;
      // From max_seats on, not only at the ceiling: past max_seats a grant is an overdraft, which
      // the vendor bills (usage, true-up), so a lease whose time ran out must not make it one. The
      // cost is one indexed seek that finds nothing in the common case, paid only past max_seats.
      if (active >= max) {
        active -= reclaimExpired(e.id, now, RECLAIM_BATCH);
        if (concurrentFull(e, active)) throw seatsInUse(e);
        overdraft = active >= max;
      }
    }

    const borrowed = req.borrowHours !== undefined;
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
      overdraft,
      borrowed,
    };
    leases.insert(lease);
    const active = leases.bumpActive(e.id, 1);
    if (req.instanceId !== undefined) leases.putInstance(lease.id, req.instanceId, expiresAt);
    leases.event({
      at: now,
      kind: 'grant',
      entitlementId: e.id,
      leaseId: lease.id,
      subjectType: req.subjectType,
      subjectKey: req.subjectKey,
      activeAfter: active,
      flags: overdraft || borrowed ? eventFlags(lease) : null,
    });
    return { lease, grace };
  }

  /**
   * A subject's lease in force asked for again with borrow_hours or instance_id, or already
   * borrowed: refreshed, never shortened (a borrow or another instance may need it longer). A new
   * instance counts against max_instances_per_subject; a new borrow against max_borrowed_seats.
   * Refusals come before any write.
   */
  function refreshFloating(
    e: Entitlement,
    current: Lease,
    req: KeyedRequest,
    now: number,
    expiresAt: number,
    features: string[],
  ): Lease {
    const borrowNow = req.borrowHours !== undefined && !current.borrowed;
    if (borrowNow) checkBorrowLeft(e, leases.liveBorrowedCount(e.id, now));
    if (req.instanceId !== undefined) checkInstance(e, current.id, req.instanceId, now);
    const until = Math.max(current.expiresAt, expiresAt);
    leases.refresh(current.id, now, until, features);
    if (borrowNow) leases.borrow(current.id);
    if (req.instanceId !== undefined) leases.putInstance(current.id, req.instanceId, expiresAt);
    const lease = {
      ...current,
      renewedAt: now,
      expiresAt: until,
      features,
      borrowed: current.borrowed || borrowNow,
    };
    leases.event({
      at: now,
      kind: 'renew',
      entitlementId: e.id,
      leaseId: current.id,
      subjectType: req.subjectType,
      subjectKey: req.subjectKey,
      // Flagged only when the borrow starts here: usage counts borrows from these events.
      flags: borrowNow ? EVENT_BORROWED : null,
    });
    return lease;
  }

  /** An instance not yet (or no longer) on the lease must fit max_instances_per_subject. */
  function checkInstance(e: Entitlement, leaseId: string, instanceId: string, now: number): void {
    if (e.policy.max_instances_per_subject === undefined) return;
    const until = leases.instanceExpiry(leaseId, instanceId);
    if (until === undefined || until <= now)
      checkInstanceLeft(e, leases.liveInstances(leaseId, now));
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
          noEntitlementDetails(req),
        );
      }
      return [e];
    }
    const all = entitlements.candidates(req.tenantId, req.productId);
    if (all.length === 0)
      throw new AppError(
        'not_found',
        `no entitlement for tenant ${req.tenantId} and product ${req.productId}`,
        noEntitlementDetails(req),
      );
    if (all.length === 1) return all;
    const score = (e: Entitlement) =>
      leases.activeFor(e.id, req.subjectType, req.subjectKey)
        ? 0
        : hasNamedSeats(e.policy.type) && seats.find(e.id, req.subjectType, req.subjectKey)
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
        // The clock guard protects the vendor's terms only (docs/design.md "Time"): manual entitlements serve.
        if (clockBehind && e.source === 'bundle') throw timeGuard.refusal(e.id, now);
        // No savepoint needed: grantOn writes nothing before a refusal but legitimate bookkeeping
        // (marking expired leases), which stands whichever entitlement serves in the end.
        const r = grantOn(e, req, now);
        return { ...r, entitlement: e };
      } catch (err) {
        if (!triesNextCandidate(err)) throw err;
        best = moreActionable(best, err);
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
      overdraft: lease.overdraft,
      borrowed: lease.borrowed,
    });
  }

  function mustGetLease(id: string): Lease {
    const l = leases.get(id);
    if (!l) throw new AppError('not_found', `no lease ${id}`);
    return l;
  }

  function renewSync(
    id: string,
    instanceId: string | undefined,
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
    const grace = inGrace(e, now);
    // In grace only: the one extra lookup (the seat) is never paid on the normal path.
    if (
      grace &&
      !heldAtEnd(
        e,
        l,
        hasNamedSeats(e.policy.type) ? seats.find(e.id, l.subjectType, l.subjectKey) : undefined,
      )
    )
      throw newcomerInGrace(e);
    const features = renewedFeatures(e, l);
    let expiresAt = expiryOf(e, now);
    if (instanceId !== undefined) {
      checkInstance(e, l.id, instanceId, now);
      leases.putInstance(l.id, instanceId, expiresAt);
    }
    // A borrow or another instance may need the lease longer than this renewal: never shorten it.
    if (instanceId !== undefined || l.borrowed) expiresAt = Math.max(l.expiresAt, expiresAt);
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

  type Attempt =
    | { ok: true; now: number; lease: Lease; entitlement: Entitlement; grace: boolean }
    | { ok: false; error: AppError };

  /**
   * One try at a grant, inside a batch: a refusal is returned, not thrown (the time guard may have
   * written the start or end of an episode, which must commit), and recorded as a `deny` event,
   * except a seat shortage for a request that will wait (its deny is written if it gives up).
   */
  function attempt(req: KeyedRequest): Attempt {
    const now = clock.now();
    const clockBehind = timeGuard.assess(now);
    try {
      return { ok: true, now, ...grantSync(req, now, clockBehind) };
    } catch (err) {
      if (err instanceof AppError && err.code === 'clock_suspect') return { ok: false, error: err };
      if (isDenial(err)) {
        if (req.waitSeconds === undefined || !waits(err)) recordDeny(req, err, now);
        return { ok: false, error: err };
      }
      throw err;
    }
  }

  function recordDeny(req: KeyedRequest, err: AppError, now: number): void {
    leases.event({
      at: now,
      kind: 'deny',
      entitlementId: refusingEntitlement(err) ?? null,
      leaseId: null,
      subjectType: req.subjectType,
      subjectKey: req.subjectKey,
      reason: err.code,
    });
  }

  async function issued(a: Extract<Attempt, { ok: true }>): Promise<IssuedLease> {
    return {
      lease: a.lease,
      entitlement: a.entitlement,
      grace: a.grace,
      token: await sign(a.lease, a.entitlement, a.grace, a.now),
    };
  }

  // ---- the queue (README "Floating extras"): wait_seconds, first come first served ----

  interface Waiting {
    req: KeyedRequest;
    refusal: AppError;
    resolve: (r: IssuedLease) => void;
    reject: (err: unknown) => void;
    deadline: ReturnType<typeof setTimeout> | undefined;
    leave: (() => void) | undefined;
  }
  const queue = createLeaseQueue<Waiting>(queueLimits);
  /** Entitlements whose head waiter is being tried; `again`: a seat may have freed meanwhile. */
  const trying = new Set<string>();
  const again = new Set<string>();
  /** Per entitlement with waiters: a timer for its next lease expiry (no polling). */
  const expiryTimers = new Map<string, ReturnType<typeof setTimeout>>();

  function refusingEntitlement(err: AppError): string | undefined {
    const id = err.details.entitlement_id;
    return typeof id === 'string' ? id : undefined;
  }

  /** May a request with wait_seconds queue for this refusal? A seat shortage on a concurrent entitlement. */
  function waits(err: AppError): boolean {
    if (!isSeatShortage(err)) return false;
    const id = refusingEntitlement(err);
    return id !== undefined && entitlements.get(id)?.policy.type === 'concurrent';
  }

  /** Queues a refused request; it is answered when it wins a seat, at its deadline, or never (gone). */
  function wait(req: KeyedRequest, refusal: AppError, gone: ClientGone | undefined) {
    const entId = refusingEntitlement(refusal)!;
    return new Promise<IssuedLease>((resolve, reject) => {
      const waiting: Waiting = {
        req: { ...req, queued: true },
        refusal,
        resolve,
        reject,
        deadline: undefined,
        leave: undefined,
      };
      const w = queue.push(entId, waiting);
      if (w === null) {
        refuseAfterDeny(req, refusal, queueFull(refusal, entId), reject);
        return;
      }
      const seconds = req.waitSeconds!;
      waiting.deadline = setTimeout(() => {
        leave(w);
        const now = refusalOrFail(entId, refusal, reject);
        if (now === undefined) return;
        const late = new AppError(
          'seats_exhausted',
          `${now.message}; waited ${seconds} s for a seat`,
          {
            ...now.details,
            waited_seconds: seconds,
          },
        );
        refuseAfterDeny(req, now, late, reject);
      }, seconds * 1000);
      // The client's socket keeps the process up while it waits; the timer alone should not.
      waiting.deadline.unref();
      // The client hung up: out of the line at once, no answer, no deny (nobody asked any more).
      waiting.leave = gone?.(() => {
        leave(w);
        reject(new AppError('request_timeout', 'the client left the queue'));
      });
      serve(entId);
    });
  }

  /**
   * The seat shortage as the entitlement's policy says it now (max_seats or overdraft_seats may
   * have changed while a request waited), else the one the request was queued with.
   */
  function currentRefusal(entId: string, queuedWith: AppError): AppError {
    const e = entitlements.get(entId);
    return e !== undefined && e.policy.type === 'concurrent' ? seatsInUse(e) : queuedWith;
  }

  /**
   * currentRefusal for a waiter answered outside its request (its deadline's timer, the shutdown).
   * When the database cannot be read (PostgreSQL unreachable) the waiter is answered that failure
   * (503 storage_unavailable) and undefined returned: a throw there would end the process or the drain.
   */
  function refusalOrFail(
    entId: string,
    queuedWith: AppError,
    reject: (err: unknown) => void,
  ): AppError | undefined {
    try {
      return currentRefusal(entId, queuedWith);
    } catch (err) {
      reject(err);
      return undefined;
    }
  }

  /** Records the deny of a request that gave up waiting, then (committed or not) refuses it. */
  function refuseAfterDeny(
    req: KeyedRequest,
    refusal: AppError,
    answer: AppError,
    reject: (err: unknown) => void,
  ): void {
    const done = () => reject(answer);
    store.batch(() => recordDeny(req, refusal, clock.now())).then(done, done);
  }

  /** Takes a waiter out of the line and drops its timer and disconnect watch. */
  function leave(w: Waiter<Waiting>): void {
    queue.remove(w);
    clearTimeout(w.payload.deadline);
    w.payload.leave?.();
    if (!queue.has(w.entitlementId)) {
      clearTimeout(expiryTimers.get(w.entitlementId));
      expiryTimers.delete(w.entitlementId);
    }
  }

  function queueFull(refusal: AppError, entId: string): AppError {
    return new AppError(
      'seats_exhausted',
      `${refusal.message}, and the queue for a seat is full (${queue.depth(entId)} waiting here, ${queue.size} in all)`,
      { ...refusal.details, reason: 'queue_full' },
    );
  }

  /**
   * A seat of `entId` may have freed: try its head waiter (one try at a time per entitlement, so
   * seats go in arrival order and a newcomer never takes one first; see grantOn). A win answers
   * the waiter and tries the next; a shortage waits for the next release, revocation, sweep or
   * the timer set for the next expiry.
   */
  function serve(entId: string | undefined): void {
    if (entId === undefined) return;
    if (trying.has(entId)) {
      again.add(entId);
      return;
    }
    const w = queue.head(entId);
    if (w === undefined) return;
    trying.add(entId);
    again.delete(entId);
    store
      .batch(() => attempt(w.payload.req))
      .then(
        (a) => {
          trying.delete(entId);
          if (a.ok) {
            if (w.queued) {
              leave(w);
              issued(a).then(w.payload.resolve, w.payload.reject);
            } else if (a.lease.grantedAt === a.now) {
              // Its deadline or disconnect came while the grant was in flight: give the new seat back.
              void service.release(a.lease.id).catch(() => {});
            }
            return serve(entId);
          }
          if (isSeatShortage(a.error)) {
            if (again.delete(entId)) return serve(entId);
            return armExpiry(entId);
          }
          // Refused for another reason now (suspended, features removed…): that is its answer.
          if (w.queued) {
            leave(w);
            w.payload.reject(a.error);
          }
          serve(entId);
        },
        (err: unknown) => {
          trying.delete(entId);
          if (w.queued) {
            leave(w);
            w.payload.reject(err);
          }
          serve(entId);
        },
      );
  }

  /** Sets one timer per waiting entitlement for its next lease expiry (which frees a seat). */
  function armExpiry(entId: string): void {
    if (expiryTimers.has(entId) || !queue.has(entId)) return;
    let at: number | undefined;
    try {
      at = leases.nextExpiry(entId);
    } catch {
      // Unreadable just now (PostgreSQL unreachable; this runs after a batch, outside any
      // request): try the head waiter again shortly, and its batch's failure answers it.
      at = clock.now() + EXPIRY_READ_RETRY_MS;
    }
    if (at === undefined && queueRecheckMs === undefined) return;
    const delay =
      Math.min(
        at === undefined ? Infinity : Math.max(at - clock.now(), 0),
        MAX_WAIT_SECONDS * 1000,
        queueRecheckMs ?? Infinity,
      ) + 5;
    const t = setTimeout(() => {
      expiryTimers.delete(entId);
      serve(entId);
    }, delay);
    t.unref();
    expiryTimers.set(entId, t);
  }

  /**
   * After a release, revocation or sweep (a seat freed), or a change to the entitlement (more
   * seats, suspended, revoked, renewed): its head waiter is tried again and gets the answer of now.
   */
  function freed(entId: string): void {
    if (queue.size !== 0 && queue.has(entId)) serve(entId);
  }

  const service = {
    /**
     * Grants (or refreshes) a lease. The check and the grant run in one IMMEDIATE transaction
     * shared with concurrent grants (group commit); the token is signed after the commit, off the
     * main thread.
     *
     * @throws AppError the most actionable refusal of the candidate entitlements: `not_found`,
     *   `invalid_request` (subject type), `entitlement_inactive`, `seat_not_assigned`,
     *   `seats_exhausted`, `feature_not_entitled` (each recorded as a `deny` event), or
     *   `clock_suspect` (a bundle-managed entitlement while the clock is behind)
     */
    async grant(request: LeaseRequest, gone?: ClientGone): Promise<IssuedLease> {
      // The subject's canonical key, once per request: one short normalize + fold (src/subjects.ts).
      const req: KeyedRequest = { ...request, subjectKey: subjectKey(request.subjectId) };
      const outcome = await store.batch(() => attempt(req));
      if (!outcome.ok) {
        const e = outcome.error;
        if (queue.size !== 0 && isSeatShortage(e)) serve(refusingEntitlement(e));
        if (req.waitSeconds !== undefined && waits(e)) return wait(req, e, gone);
        throw e;
      }
      return {
        lease: outcome.lease,
        entitlement: outcome.entitlement,
        grace: outcome.grace,
        token: await sign(outcome.lease, outcome.entitlement, outcome.grace, outcome.now),
      };
    },

    /**
     * Renews a lease in force: the same lease, a new expiry and token; the features the
     * entitlement still grants.
     *
     * @throws AppError `not_found`; `lease_released` (released or revoked); `lease_expired`;
     *   `entitlement_inactive`; `clock_suspect`
     */
    async renew(id: string, instanceId?: string): Promise<IssuedLease> {
      const r = await store.batch(() => {
        const now = clock.now();
        const clockBehind = timeGuard.assess(now);
        try {
          return { ok: true as const, now, ...renewSync(id, instanceId, now, clockBehind) };
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

    /**
     * Releases a lease: frees its seat. Idempotent: releasing again answers the lease as it is.
     * With `instanceId`, releases that instance of a shared lease: the lease (still `active`) and
     * its seat stay while another instance is in force; the last one's release ends it.
     * `instances`: the instances left in force.
     *
     * @throws AppError `not_found`
     */
    release(id: string, instanceId?: string): Promise<Lease & { instances?: number }> {
      const done = store.batch((): Lease & { instances?: number } => {
        const now = clock.now();
        const l = mustGetLease(id);
        if (l.state !== 'active') return l;
        const state = l.expiresAt <= now ? 'expired' : 'released';
        if (instanceId !== undefined && state === 'released') {
          leases.dropInstance(l.id, instanceId);
          const left = leases.liveInstances(l.id, now);
          if (left > 0) return { ...l, instances: left };
          leases.dropInstances(l.id);
        }
        endLease(l, state, now);
        return { ...l, state, endedAt: now, ...(instanceId !== undefined ? { instances: 0 } : {}) };
      });
      // Waiters get the freed seat after the commit; nothing more is paid while nobody waits.
      if (queue.size === 0) return done;
      return done.then((l) => {
        if (l.state !== 'active') freed(l.entitlementId);
        return l;
      });
    },

    /**
     * An admin ends a lease at once; its next renewal is refused. Audited.
     *
     * @throws AppError `not_found`; `conflict` (not active)
     */
    revoke(id: string, actor: Actor): Lease {
      const revoked = store.tx(() => {
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
      freed(revoked.entitlementId);
      return revoked;
    },

    /**
     * One lease by id, in any state.
     *
     * @throws AppError `not_found`
     */
    get: mustGetLease,

    /**
     * Could a lease be granted now? With a subject (any spelling of it), answers for that subject (in
     * grace only one that held on at the end of term; manual seats need an assignment); without
     * one, for a newcomer. A subject without a type is the type the policy leases to (`user` when
     * it takes either). The rules: leaseCheck (lease-rules.ts). Throws nothing: a refusal is its
     * `reason`.
     */
    check(
      e: Entitlement,
      subject?: { subjectType?: SubjectType | undefined; subjectId: string },
    ): LeaseCheck {
      const now = clock.now();
      const named = hasNamedSeats(e.policy.type);
      const type = subject?.subjectType ?? policySubjectType(e.policy.type) ?? 'user';
      const key = subject ? subjectKey(subject.subjectId) : '';
      const found = subject ? leases.activeFor(e.id, type, key) : undefined;
      const lease = found !== undefined && found.expiresAt > now ? found : undefined;
      const seat = subject && named ? seats.find(e.id, type, key) : undefined;
      return leaseCheck(
        e,
        now,
        { lease, seat },
        {
          seatsAssigned: leases.counters(e.id).seatsAssigned,
          leasesInForce: leases.liveCount(e.id, now),
        },
        e.source === 'bundle' && timeGuard.status().suspect,
      );
    },

    /** Use right now: leases in force (not merely unswept), named seats, the limit. Throws nothing. */
    usageNow(e: Entitlement): UsageNow {
      return {
        activeLeases: leases.liveCount(e.id, clock.now()),
        seatsAssigned: leases.counters(e.id).seatsAssigned,
        maxSeats: e.policy.max_seats ?? null,
      };
    },

    /**
     * Marks leases whose time has passed as expired and records the events; forgets instances
     * that stopped renewing (their lease may live on through another). Returns the leases marked.
     */
    sweep(): number {
      let total = 0;
      for (;;) {
        const n = store.tx(() => {
          const now = clock.now();
          const marked = reclaimExpired(null, now, SWEEP_BATCH);
          // The last batch's transaction also prunes the instances (an index range, 0009).
          if (marked < SWEEP_BATCH) leases.pruneInstances(now);
          return marked;
        });
        total += n;
        if (n < SWEEP_BATCH) break;
      }
      if (total > 0) for (const id of [...queue.entitlements()]) serve(id);
      return total;
    },

    /**
     * A page of leases in force, in grant order, filtered (a subject by any spelling of its id).
     *
     * @throws AppError `invalid_request` (a cursor this list did not give out)
     */
    list(filter: {
      entitlementId?: string | undefined;
      tenantId?: string | undefined;
      productId?: string | undefined;
      subjectType?: string | undefined;
      subjectId?: string | undefined;
      cursor?: string | undefined;
      limit?: number | undefined;
    }): Page<ListedLease> {
      const limit = filter.limit ?? DEFAULT_PAGE_SIZE;
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
      return pageOf(rows, limit, (l) => encodeCursor('l', l.seq));
    },

    /**
     * What the seed's status call shows for a subject: the entitlement it leases on now, else holds
     * a seat on, else leased on last; else, when only one tenant has the product, that tenant's
     * first by the grant rule. Several tenants and no tie to the subject: tenant_id is required.
     *
     * @throws AppError `not_found` (no entitlement for the product); `invalid_request` (several
     *   tenants and no tenant_id)
     */
    status(q: {
      productId: string;
      subjectType: string;
      subjectId: string;
      tenantId?: string | undefined;
    }): SubjectStatus {
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
      chosen ??= all.find(
        (e) => hasNamedSeats(e.policy.type) && seats.find(e.id, q.subjectType, key),
      );
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
        seat: hasNamedSeats(chosen.policy.type)
          ? seats.find(chosen.id, q.subjectType, key)
          : undefined,
        leasesInUse: leases.liveCount(chosen.id, now),
        seatsAssigned: counters.seatsAssigned,
        queued: queue.depth(chosen.id),
      };
    },
    /**
     * The server is stopping: every waiting request is answered now with its refusal
     * (`seats_exhausted`, details.reason `shutting_down`) instead of holding the drain.
     */
    stopWaiting(): void {
      for (const w of queue.all()) {
        leave(w);
        const r = refusalOrFail(w.entitlementId, w.payload.refusal, w.payload.reject);
        if (r === undefined) continue;
        w.payload.reject(
          new AppError('seats_exhausted', `${r.message}; the server is shutting down`, {
            ...r.details,
            reason: 'shutting_down',
          }),
        );
      }
    },

    /**
     * An entitlement was created or its terms changed (policy, status, term), or, without an id,
     * possibly any (a bundle import): the waiters it may concern (its own, and those of its tenant
     * and product, which it may serve now) are tried again at once and answered as things stand
     * (a grant when seats were added; entitlement_inactive when suspended…). Free while nobody waits.
     */
    entitlementChanged(entitlementId?: string): void {
      if (queue.size === 0) return;
      const changed = entitlementId === undefined ? undefined : entitlements.get(entitlementId);
      for (const id of [...queue.entitlements()]) {
        if (entitlementId === undefined || id === entitlementId) serve(id);
        else if (changed !== undefined) {
          const other = entitlements.get(id);
          if (other?.tenantId === changed.tenantId && other.productId === changed.productId)
            serve(id);
        }
      }
    },

    /** Requests waiting for a seat: in all, or on one entitlement (/metrics, status). */
    queued(entitlementId?: string): number {
      return entitlementId === undefined ? queue.size : queue.depth(entitlementId);
    },
  };
  return service;
}

export type LeaseService = ReturnType<typeof createLeaseService>;

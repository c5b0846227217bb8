/**
 * The lease rules as pure functions: given an entitlement, what the store holds about the subject
 * (its lease, its seat, the counters) and the time, they decide or refuse. No reads or writes here:
 * the lease service (leases.ts) reads, asks these, and writes, so another store (one with
 * asynchronous I/O) drives the same rules. Refusals are AppErrors whose codes are the API's.
 */
import { be, counted, every } from '../plural.ts';
import { AppError, type ErrorCode } from '../errors.ts';
import type { Entitlement, Lease, Seat } from './types.ts';
import { DAY_MS, graceDays, hasNamedSeats, policySubjectType } from './types.ts';

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

/** Is this error a grant denial (recorded as a `deny` event), not a fault? */
export function isDenial(err: unknown): err is AppError {
  return err instanceof AppError && DENIALS.has(err.code);
}

/** Does this refusal let the next candidate entitlement try (a denial, or the clock guard's)? */
export function triesNextCandidate(err: unknown): err is AppError {
  return err instanceof AppError && (DENIALS.has(err.code) || err.code === 'clock_suspect');
}

/** Of two refusals from different candidates, the one to answer: the more actionable. */
export function moreActionable(best: AppError | undefined, next: AppError): AppError {
  return !best || DENIAL_PRIORITY.indexOf(next.code) < DENIAL_PRIORITY.indexOf(best.code)
    ? next
    : best;
}

/**
 * Is the entitlement usable now? Returns true inside the grace window, where only subjects that
 * held on at the end of term may lease (see {@link heldAtEnd}), false inside the term.
 *
 * @throws AppError `entitlement_inactive` (details.reason `revoked`, `suspended`, `pending` or
 *   `expired`) when it is not usable at all
 */
export function inGrace(e: Entitlement, now: number): boolean {
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
export function heldAtEnd(
  e: Entitlement,
  lease: Lease | undefined,
  seat: Seat | undefined,
): boolean {
  return hasNamedSeats(e.policy.type)
    ? seat !== undefined && seat.assignedAt <= e.endsAt
    : lease !== undefined && lease.grantedAt <= e.endsAt;
}

/**
 * A refusal during grace, one shape for leases and installations: `entitlement_inactive`, details
 * `{reason: 'expired', status: 'grace', entitlement_id, grace_ends_at}` (ISO 8601).
 *
 * @param allowed what the grace period still allows, completing "during its grace period … ";
 * @param hint the error's hint, if any
 */
export function graceRefusal(e: Entitlement, allowed: string, hint?: string): AppError {
  const graceEnds = new Date(e.endsAt + graceDays(e.policy) * DAY_MS).toISOString();
  return new AppError(
    'entitlement_inactive',
    `${e.id} ended at ${new Date(e.endsAt).toISOString()}; during its grace period (until ${graceEnds}) ${allowed}`,
    { reason: 'expired', status: 'grace', entitlement_id: e.id, grace_ends_at: graceEnds },
    hint,
  );
}

/** The refusal of a newcomer during grace: `entitlement_inactive`, details.status `grace`. */
export function newcomerInGrace(e: Entitlement): AppError {
  return graceRefusal(e, 'only subjects that held a seat or lease at the end of term may lease');
}

/**
 * The word a check answers for a refusal (`reason` of /v1 check and the template face's
 * entitlements check): an inactive entitlement's status (details.reason: `expired`, `suspended`,
 * `revoked`, `pending`), else the error code (`quota_exhausted`, `clock_suspect`, …).
 */
export function refusalReason(err: AppError): string {
  return String(err.details.reason ?? err.code);
}

/**
 * per_user leases to users, per_machine to machines; the others to either.
 *
 * @throws AppError `invalid_request` for the other subject type
 */
export function checkSubjectType(e: Entitlement, subjectType: string): void {
  const want = policySubjectType(e.policy.type);
  if (want !== null && subjectType !== want) {
    throw new AppError(
      'invalid_request',
      `${e.id} is ${e.policy.type}: it leases to subject_type "${want}", not "${subjectType}"`,
      { entitlement_id: e.id },
    );
  }
}

/**
 * The features a new or refreshed lease carries: the ones asked for (each once), or all the
 * entitlement grants when none are asked for.
 *
 * @throws AppError `feature_not_entitled` (details.features: the missing ones)
 */
export function grantedFeatures(e: Entitlement, requested: string[] | undefined): string[] {
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

/** A renewal keeps the features the entitlement still grants (an admin may have removed some). */
export function renewedFeatures(e: Entitlement, lease: Lease): string[] {
  const entitled = e.policy.features ?? [];
  return lease.features.filter((f) => entitled.includes(f));
}

/**
 * When a lease granted or renewed now ends (ms): now + `ttlSeconds`, never past the term plus
 * grace (only holders reach grace, and they may renew until it ends).
 *
 * @throws AppError `entitlement_inactive` (reason `expired`) when that is less than a whole second
 *   away: a token lives whole seconds and must end at least one second after issue. Refused before
 *   the commit, so the signing after it cannot fail with a seat taken.
 */
export function leaseExpiry(e: Entitlement, now: number, ttlSeconds: number): number {
  const expiresAt = Math.min(now + ttlSeconds * 1000, e.endsAt + graceDays(e.policy) * DAY_MS);
  if (Math.floor(expiresAt / 1000) <= Math.floor(now / 1000)) {
    throw new AppError(
      'entitlement_inactive',
      `${e.id} ends at ${new Date(expiresAt).toISOString()}, less than a second from now: too late for a lease`,
      { reason: 'expired', entitlement_id: e.id },
    );
  }
  return expiresAt;
}

/**
 * May a subject without a seat take one itself, at its first lease?
 *
 * @throws AppError `seat_not_assigned` when seats are assigned by an admin (seat_assignment
 *   `manual`)
 */
export function checkSeatSelfService(
  e: Entitlement,
  subject: { subjectType: string; subjectId: string },
): void {
  if (e.policy.seat_assignment === 'manual') {
    throw new AppError(
      'seat_not_assigned',
      `${subject.subjectType} ${subject.subjectId} holds no seat on ${e.id}, and its seats are assigned by an admin`,
      { entitlement_id: e.id },
    );
  }
}

/** max_seats plus the policy's overdraft_seats: the most seats (or leases) that may be taken. */
export function seatCeiling(e: Entitlement): number {
  return e.policy.max_seats! + (e.policy.overdraft_seats ?? 0);
}

/**
 * Is a named seat left with `seatsAssigned` taken? Returns true when the seat is an overdraft one
 * (past max_seats, within overdraft_seats: README "Floating extras").
 *
 * @throws AppError `seats_exhausted` when all max_seats (plus overdraft_seats) are assigned
 */
export function checkSeatLeft(e: Entitlement, seatsAssigned: number): boolean {
  const max = e.policy.max_seats!;
  if (seatsAssigned >= seatCeiling(e)) {
    throw new AppError('seats_exhausted', `${allSeats(e)} assigned`, {
      entitlement_id: e.id,
      max_seats: max,
      ...(e.policy.overdraft_seats ? { overdraft_seats: e.policy.overdraft_seats } : {}),
    });
  }
  return seatsAssigned >= max;
}

/** "all 2 seats of ent_… and its 1 overdraft seat are", "the 1 seat of ent_… is": a full entitlement's seats. */
function allSeats(e: Entitlement): string {
  const max = e.policy.max_seats!;
  const over = e.policy.overdraft_seats ?? 0;
  const overdraft = over > 0 ? ` and its ${counted(over, 'overdraft seat')}` : '';
  return `${every(max, 'seat')} of ${e.id}${overdraft} ${be(over > 0 ? 2 : max)}`;
}

/** Is a concurrent entitlement full (max_seats plus overdraft_seats) with this many leases in force? */
export function concurrentFull(e: Entitlement, active: number): boolean {
  return active >= seatCeiling(e);
}

/** The refusal of a lease on a full concurrent entitlement: `seats_exhausted`. */
export function seatsInUse(e: Entitlement): AppError {
  const over = e.policy.overdraft_seats;
  return new AppError('seats_exhausted', `${allSeats(e)} in use`, {
    entitlement_id: e.id,
    max_seats: e.policy.max_seats,
    ...(over ? { overdraft_seats: over } : {}),
  });
}

/**
 * When a borrowed lease ends (ms): now + `hours`, never past the term plus grace.
 *
 * @throws AppError `invalid_request` when the policy allows no borrowing (max_borrow_hours 0 or
 *   absent) or `hours` is over its max_borrow_hours; `entitlement_inactive` as {@link leaseExpiry}
 */
export function borrowExpiry(e: Entitlement, now: number, hours: number): number {
  const max = e.policy.max_borrow_hours ?? 0;
  if (hours > max) {
    throw new AppError(
      'invalid_request',
      max === 0
        ? `${e.id} allows no borrowing (policy max_borrow_hours is 0)`
        : `${e.id} allows borrowing for at most ${counted(max, 'hour')}, not ${hours}`,
      {
        entitlement_id: e.id,
        max_borrow_hours: max,
        issues: [{ path: 'borrow_hours', message: `must be at most ${max}` }],
      },
    );
  }
  return leaseExpiry(e, now, hours * 3600);
}

/**
 * May one more lease be borrowed with `borrowed` borrowed now? The cap is max_borrowed_seats
 * (absent: no cap beyond the seats).
 *
 * @throws AppError `seats_exhausted` (details.reason `borrow_limit`)
 */
export function checkBorrowLeft(e: Entitlement, borrowed: number): void {
  const cap = e.policy.max_borrowed_seats;
  if (cap !== undefined && borrowed >= cap) {
    const said =
      cap === 0
        ? `no seat of ${e.id} may be borrowed (max_borrowed_seats is 0)`
        : `${every(cap, 'borrowable seat')} of ${e.id} ${be(cap)} borrowed`;
    throw new AppError('seats_exhausted', said, {
      entitlement_id: e.id,
      reason: 'borrow_limit',
      max_borrowed_seats: cap,
    });
  }
}

/**
 * May a subject's shared lease take one more instance with `live` in force?
 *
 * @throws AppError `seats_exhausted` (details.reason `instance_limit`) at max_instances_per_subject
 */
export function checkInstanceLeft(e: Entitlement, live: number): void {
  const cap = e.policy.max_instances_per_subject;
  if (cap !== undefined && live >= cap) {
    throw new AppError(
      'seats_exhausted',
      `the subject runs ${counted(live, 'instance')} on ${e.id}, its limit (max_instances_per_subject)`,
      { entitlement_id: e.id, reason: 'instance_limit', max_instances_per_subject: cap },
    );
  }
}

/** Does a refusal mean every seat is taken (so a request may queue for one), not another cap? */
export function isSeatShortage(err: AppError): boolean {
  return err.code === 'seats_exhausted' && err.details.reason === undefined;
}

/** What {@link leaseCheck} answers: could a lease be had now, and if not, why. */
export interface LeaseCheck {
  canLease: boolean;
  /**
   * Free seats (named: unassigned; concurrent: not in use), overdraft_seats included; null when
   * the policy has no limit.
   */
  remainingSeats: number | null;
  /** The refusal's reason (`expired`, `suspended`, `seats_exhausted`, `clock_suspect`…), or null. */
  reason: string | null;
}

/**
 * Could a lease be granted now, without granting it? For a holder (its lease in force or its seat)
 * or, with neither, a newcomer: in grace only holders; manual seats need an assignment; a full
 * entitlement refuses newcomers. `clockSuspect`: the clock guard would refuse this entitlement.
 */
export function leaseCheck(
  e: Entitlement,
  now: number,
  held: { lease: Lease | undefined; seat: Seat | undefined },
  use: { seatsAssigned: number; leasesInForce: number },
  clockSuspect: boolean,
): LeaseCheck {
  const named = hasNamedSeats(e.policy.type);
  // Overdraft seats can be had too (marked): they count as free here.
  const max = e.policy.max_seats === undefined ? undefined : seatCeiling(e);
  const remaining =
    max === undefined ? null : Math.max(0, max - (named ? use.seatsAssigned : use.leasesInForce));
  let reason: string | null = null;
  try {
    if (inGrace(e, now) && !heldAtEnd(e, held.lease, held.seat)) throw newcomerInGrace(e);
  } catch (err) {
    reason = err instanceof AppError ? refusalReason(err) : 'internal';
  }
  if (reason === null && e.source === 'bundle' && clockSuspect) reason = 'clock_suspect';
  if (reason === null && held.lease === undefined && held.seat === undefined) {
    if (named && e.policy.seat_assignment === 'manual') reason = 'seat_not_assigned';
    else if (remaining === 0) reason = 'seats_exhausted';
  }
  return { canLease: reason === null, remainingSeats: remaining, reason };
}

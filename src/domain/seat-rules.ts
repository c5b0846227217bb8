/**
 * The named-seat rules as pure functions: given an entitlement, the subjects asked for, what the
 * store holds (their seats, the count assigned) and the time, they refuse or let pass. The seat
 * service (seats.ts) reads, asks these, and writes. Refusals are AppErrors with the API's codes.
 */
import { counted } from '../plural.ts';
import { AppError } from '../errors.ts';
import type { Entitlement, Seat, SubjectType } from './types.ts';
import { DAY_MS, graceDays, hasNamedSeats, policySubjectType } from './types.ts';

/** A subject a seat is asked for, with its canonical key (src/subjects.ts). */
export interface SeatCandidate {
  subjectType: SubjectType;
  subjectId: string;
  subjectKey: string;
}

/** One subject that cannot take a seat, by its index in the request. */
export interface SeatProblem {
  index: number;
  subject: string;
  message: string;
}

/** How many problems a refusal lists (details.errors). */
const PROBLEMS_SHOWN = 100;

/**
 * The subject type the entitlement's seats take.
 *
 * @throws AppError `conflict` when its policy has no named seats (concurrent, feature_based)
 */
export function seatSubjectType(e: Entitlement): SubjectType {
  if (!hasNamedSeats(e.policy.type)) {
    throw new AppError(
      'conflict',
      `${e.id} is ${e.policy.type}: only per_user and per_machine entitlements have named seats`,
    );
  }
  return policySubjectType(e.policy.type)!;
}

/**
 * May the entitlement take new seats at `now` (ms)? From the end of term on nobody new takes a
 * seat (README "Grace"): during grace only holders lease, after it nobody.
 *
 * @throws AppError `conflict` (revoked); `entitlement_inactive` (reason `expired`,
 *   details.status `grace` or `expired`)
 */
export function checkTakesSeats(e: Entitlement, now: number): void {
  if (e.status === 'revoked')
    throw new AppError('conflict', `${e.id} is revoked; it takes no seats`);
  if (now <= e.endsAt) return;
  const graceEnds = e.endsAt + graceDays(e.policy) * DAY_MS;
  const inGrace = now <= graceEnds;
  const end = new Date(e.endsAt).toISOString();
  throw new AppError(
    'entitlement_inactive',
    inGrace
      ? `${e.id} ended at ${end}; during its grace period (until ${new Date(graceEnds).toISOString()}) only subjects that held a seat at the end of term may lease, so no seat is assigned`
      : `${e.id} expired at ${end}; it takes no seats`,
    {
      reason: 'expired',
      status: inGrace ? 'grace' : 'expired',
      entitlement_id: e.id,
      grace_ends_at: new Date(graceEnds).toISOString(),
    },
    'renew the entitlement first (its end moves forward), then assign the seat',
  );
}

/**
 * All or nothing: every subject must be of the seats' type, listed once (by canonical key, so
 * `alice` and `Alice` are listed twice) and hold no seat yet. `held[i]` is the seat subject i
 * holds on the entitlement, if any.
 *
 * @throws AppError `conflict`, details.errors listing each subject that cannot take a seat
 */
export function checkSeatRequest(
  e: Entitlement,
  want: SubjectType,
  subjects: readonly SeatCandidate[],
  held: ReadonlyArray<Seat | undefined>,
): void {
  const seen = new Map<string, number>();
  const problems: SeatProblem[] = [];
  subjects.forEach((s, index) => {
    const subject = `${s.subjectType}:${s.subjectId}`;
    const key = `${s.subjectType}:${s.subjectKey}`;
    const first = seen.get(key);
    const seat = held[index];
    if (s.subjectType !== want)
      problems.push({
        index,
        subject,
        message: `${e.policy.type} seats are for subject_type ${want}`,
      });
    else if (first !== undefined) {
      const other = subjects[first]!.subjectId;
      problems.push({
        index,
        subject,
        message:
          other === s.subjectId
            ? 'listed twice'
            : `listed twice: the same subject as index ${first} (${other})`,
      });
    } else if (seat)
      problems.push({
        index,
        subject,
        message:
          seat.subjectId === s.subjectId
            ? 'holds a seat already'
            : `holds a seat already as ${seat.subjectId}`,
      });
    if (first === undefined) seen.set(key, index);
  });
  if (problems.length > 0) {
    throw new AppError(
      'conflict',
      `${problems.length} of ${subjects.length} subjects cannot take a seat; no seat was assigned`,
      { errors: problems.slice(0, PROBLEMS_SHOWN) },
    );
  }
}

/**
 * Are there `requested` free seats with `seatsAssigned` taken?
 *
 * @throws AppError `seats_exhausted` (details: max_seats, assigned, requested)
 */
export function checkSeatsFree(e: Entitlement, seatsAssigned: number, requested: number): void {
  const max = e.policy.max_seats!;
  if (seatsAssigned + requested <= max) return;
  throw new AppError(
    'seats_exhausted',
    `${e.id} has ${Math.max(0, max - seatsAssigned)} free of ${counted(max, 'seat')}; ${requested} asked`,
    { entitlement_id: e.id, max_seats: max, assigned: seatsAssigned, requested },
  );
}

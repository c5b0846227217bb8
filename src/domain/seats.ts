import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId } from '../ids.ts';
import { decodeCursor, encodeCursor, pageOf } from './cursor.ts';
import type { Store } from './store.ts';
import type { Actor, Entitlement, Page, Seat, SubjectType } from './types.ts';
import {
  checkSeatRequest,
  checkSeatsFree,
  checkTakesSeats,
  seatSubjectType,
} from './seat-rules.ts';
import { subjectKey } from '../subjects.ts';
import { endLease } from './lease-end.ts';

export interface SeatSubject {
  subjectType: SubjectType;
  subjectId: string;
}

/** The default page size of a seat list. */
/** A page of seats when no limit is given (seats list, GET …/seats). */
export const SEAT_PAGE_SIZE = 100;
const SEAT_KEY = /^seat_[A-Za-z0-9_-]{22}$/;

/**
 * Named seats of per_user and per_machine entitlements: assigned, listed, revoked by admins. The
 * rules are seat-rules.ts; this reads, asks them, and writes. Besides the codes each function
 * lists, a write may fail in the store (busy, full or read-only disk).
 */
export function createSeatService({ store, clock }: { store: Store; clock: Clock }) {
  const { seats, leases } = store;

  /** The entitlement, with the subject type its seats take. */
  function seated(id: string): { e: Entitlement; type: SubjectType } {
    const e = store.entitlements.get(id);
    if (!e) throw new AppError('not_found', `no entitlement ${id}`);
    return { e, type: seatSubjectType(e) };
  }

  return {
    /**
     * The subject type an entitlement's seats take (for the marketplace's bare principal ids).
     *
     * @throws AppError `not_found`; `conflict` when the entitlement has no named seats
     */
    subjectTypeOf(id: string): SubjectType {
      return seated(id).type;
    },

    /**
     * Assigns seats, all or nothing: a subject listed twice (in any spelling: subjects are matched
     * by canonical key), one already seated, a wrong subject type or too few free seats refuse the
     * whole request. From the end of term on nobody new takes a seat: during grace and after,
     * entitlement_inactive (reason `expired`, details.status `grace` or `expired`).
     *
     * @throws AppError `not_found`; `conflict` (no named seats, revoked, or details.errors lists
     *   each subject that cannot take a seat); `entitlement_inactive` (ended); `seats_exhausted`
     */
    assign(entitlementId: string, subjects: SeatSubject[], actor: Actor): Seat[] {
      return store.tx(() => {
        const { e, type } = seated(entitlementId);
        const now = clock.now();
        checkTakesSeats(e, now);
        const keys = subjects.map((s) => subjectKey(s.subjectId));
        const asked = subjects.map((s, i) => ({ ...s, subjectKey: keys[i]! }));
        checkSeatRequest(
          e,
          type,
          asked,
          asked.map((s) =>
            s.subjectType === type ? seats.find(e.id, s.subjectType, s.subjectKey) : undefined,
          ),
        );
        checkSeatsFree(e, leases.counters(e.id).seatsAssigned, subjects.length);
        const out = subjects.map((s, i) => ({
          id: newId('seat'),
          entitlementId: e.id,
          subjectType: s.subjectType,
          subjectId: s.subjectId,
          subjectKey: keys[i]!,
          assignedAt: now,
          assignedBy: actor,
        }));
        for (const seat of out) seats.insert(seat);
        leases.bumpSeats(e.id, out.length);
        store.audit.append({
          at: now,
          actor,
          action: 'seat.assign',
          targetType: 'entitlement',
          targetId: e.id,
          details: {
            seats: out.map((s) => ({ seat_id: s.id, subject: `${s.subjectType}:${s.subjectId}` })),
          },
        });
        return out;
      });
    },

    /**
     * Revokes a seat; a lease its holder is running ends now, so its next renewal is refused.
     *
     * @throws AppError `not_found` (no such entitlement, or no such seat on it); `conflict` when
     *   the entitlement has no named seats
     */
    revoke(
      entitlementId: string,
      seatId: string,
      actor: Actor,
    ): { seat: Seat; endedLease: string | null } {
      return store.tx(() => {
        seated(entitlementId);
        const seat = seats.get(seatId);
        if (!seat || seat.entitlementId !== entitlementId)
          throw new AppError('not_found', `no seat ${seatId} on ${entitlementId}`);
        const now = clock.now();
        seats.remove(seat.id);
        leases.bumpSeats(entitlementId, -1);
        const running = leases.activeFor(entitlementId, seat.subjectType, seat.subjectKey);
        let endedLease: string | null = null;
        // Ended as any lease ends (lease-end.ts): the same counter and event, one home.
        if (running && endLease(leases, running, 'revoked', now, 'seat_revoked'))
          endedLease = running.id;
        store.audit.append({
          at: now,
          actor,
          action: 'seat.revoke',
          targetType: 'entitlement',
          targetId: entitlementId,
          details: {
            seat_id: seat.id,
            subject: `${seat.subjectType}:${seat.subjectId}`,
            ended_lease: endedLease,
          },
        });
        return { seat, endedLease };
      });
    },

    /**
     * A page of the entitlement's seats, in id order.
     *
     * @throws AppError `not_found`; `conflict` (no named seats); `invalid_request` (a cursor this
     *   list did not give out)
     */
    list(entitlementId: string, cursor: string | undefined, limit = SEAT_PAGE_SIZE): Page<Seat> {
      seated(entitlementId);
      const after = cursor === undefined ? '' : decodeCursor('s', cursor, SEAT_KEY);
      return pageOf(seats.page(entitlementId, after, limit + 1), limit, (s) =>
        encodeCursor('s', s.id),
      );
    },
  };
}

export type SeatService = ReturnType<typeof createSeatService>;

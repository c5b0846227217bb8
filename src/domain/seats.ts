import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId } from '../ids.ts';
import { decodeCursor, pageOf } from './cursor.ts';
import type { Store } from './store.ts';
import type { Actor, Entitlement, Page, Seat, SubjectType } from './types.ts';
import { DAY_MS, graceDays, hasNamedSeats, policySubjectType } from './types.ts';
import { subjectKey } from '../subjects.ts';

export interface SeatSubject {
  subjectType: SubjectType;
  subjectId: string;
}

/** The default page size of a seat list. */
const SEAT_PAGE_SIZE = 100;
const SEAT_KEY = /^seat_[A-Za-z0-9_-]{22}$/;

/** Named seats of per_user and per_machine entitlements: assigned, listed, revoked by admins. */
export function createSeatService({ store, clock }: { store: Store; clock: Clock }) {
  const { seats, leases } = store;

  function seatedEntitlement(id: string): Entitlement {
    const e = store.entitlements.get(id);
    if (!e) throw new AppError('not_found', `no entitlement ${id}`);
    if (!hasNamedSeats(e.policy.type)) {
      throw new AppError(
        'conflict',
        `${id} is ${e.policy.type}: only per_user and per_machine entitlements have named seats`,
      );
    }
    return e;
  }

  // seatedEntitlement() checked the policy has named seats, so it leases to one subject type.
  const expectedType = (e: Entitlement): SubjectType => policySubjectType(e.policy.type)!;

  /** The refusal of a seat after the end of term: in grace nobody new may lease (README "Grace"), after it nobody at all. */
  function ended(e: Entitlement, now: number): AppError {
    const graceEnds = e.endsAt + graceDays(e.policy) * DAY_MS;
    const inGrace = now <= graceEnds;
    const end = new Date(e.endsAt).toISOString();
    return new AppError(
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

  return {
    /**
     * The subject type an entitlement's seats take (for the marketplace's bare principal ids).
     *
     * @throws AppError `not_found`; `conflict` when the entitlement has no named seats
     */
    subjectTypeOf(id: string): SubjectType {
      return expectedType(seatedEntitlement(id));
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
        const e = seatedEntitlement(entitlementId);
        if (e.status === 'revoked')
          throw new AppError('conflict', `${entitlementId} is revoked; it takes no seats`);
        const now = clock.now();
        if (now > e.endsAt) throw ended(e, now);
        const want = expectedType(e);
        const seen = new Map<string, number>();
        const problems: Array<{ index: number; subject: string; message: string }> = [];
        const keys = subjects.map((s) => subjectKey(s.subjectId));
        subjects.forEach((s, index) => {
          const label = `${s.subjectType}:${s.subjectId}`;
          const key = `${s.subjectType}:${keys[index]!}`;
          const first = seen.get(key);
          const held =
            first === undefined && s.subjectType === want
              ? seats.find(e.id, s.subjectType, keys[index]!)
              : undefined;
          if (s.subjectType !== want)
            problems.push({
              index,
              subject: label,
              message: `${e.policy.type} seats are for subject_type ${want}`,
            });
          else if (first !== undefined) {
            const other = subjects[first]!.subjectId;
            problems.push({
              index,
              subject: label,
              message:
                other === s.subjectId
                  ? 'listed twice'
                  : `listed twice: the same subject as index ${first} (${other})`,
            });
          } else if (held)
            problems.push({
              index,
              subject: label,
              message:
                held.subjectId === s.subjectId
                  ? 'holds a seat already'
                  : `holds a seat already as ${held.subjectId}`,
            });
          if (first === undefined) seen.set(key, index);
        });
        if (problems.length > 0) {
          throw new AppError(
            'conflict',
            `${problems.length} of ${subjects.length} subjects cannot take a seat; no seat was assigned`,
            { errors: problems.slice(0, 100) },
          );
        }
        const { seatsAssigned } = leases.counters(e.id);
        const max = e.policy.max_seats!;
        if (seatsAssigned + subjects.length > max) {
          throw new AppError(
            'seats_exhausted',
            `${e.id} has ${Math.max(0, max - seatsAssigned)} free of ${max} seats; ${subjects.length} asked`,
            {
              entitlement_id: e.id,
              max_seats: max,
              assigned: seatsAssigned,
              requested: subjects.length,
            },
          );
        }
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
        seatedEntitlement(entitlementId);
        const seat = seats.get(seatId);
        if (!seat || seat.entitlementId !== entitlementId)
          throw new AppError('not_found', `no seat ${seatId} on ${entitlementId}`);
        const now = clock.now();
        seats.remove(seat.id);
        leases.bumpSeats(entitlementId, -1);
        const running = leases.activeFor(entitlementId, seat.subjectType, seat.subjectKey);
        let endedLease: string | null = null;
        if (running && leases.end(running.id, 'revoked', now)) {
          const active = leases.bumpActive(entitlementId, -1);
          leases.event({
            at: now,
            kind: 'revoke',
            entitlementId,
            leaseId: running.id,
            subjectType: seat.subjectType,
            subjectKey: seat.subjectKey,
            activeAfter: active,
            reason: 'seat_revoked',
          });
          endedLease = running.id;
        }
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
      seatedEntitlement(entitlementId);
      const after = cursor === undefined ? '' : decodeCursor('s', cursor, SEAT_KEY);
      return pageOf(seats.page(entitlementId, after, limit + 1), limit, 's', (s) => s.id);
    },
  };
}

export type SeatService = ReturnType<typeof createSeatService>;

// The lease rules on their own: pure functions of an entitlement, what is held and the time. The
// HTTP tests (src/http/routes/*.test.ts) hold the same rules end to end through the store.
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { DAY_MS, type Entitlement, type Lease, type Seat } from './types.ts';
import {
  borrowExpiry,
  checkBorrowLeft,
  checkInstanceLeft,
  checkSeatLeft,
  concurrentFull,
  isSeatShortage,
  seatCeiling,
  seatsInUse,
  checkSubjectType,
  grantedFeatures,
  heldAtEnd,
  inGrace,
  leaseCheck,
  leaseExpiry,
  moreActionable,
} from './lease-rules.ts';

const T0 = Date.parse('2025-01-01T00:00:00Z');
const END = Date.parse('2025-12-31T00:00:00Z');

function ent(over: Partial<Entitlement> = {}, policy: Partial<Entitlement['policy']> = {}) {
  return {
    id: 'ent_r',
    tenantId: 't',
    productId: 'p',
    policy: { type: 'per_user', max_seats: 2, features: ['a', 'b'], ...policy },
    startsAt: T0,
    endsAt: END,
    status: 'active',
    source: 'manual',
    externalId: null,
    rev: null,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  } as Entitlement;
}

const seatAt = (assignedAt: number) => ({ assignedAt }) as Seat;
const leaseAt = (grantedAt: number) => ({ grantedAt, features: ['a', 'b'] }) as Lease;
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? [err.code, err.details.reason ?? null] : ['not an AppError'];
  }
  return null;
};

describe('term and grace', () => {
  it('is usable in term, in grace (true) until grace_days after the end, refused otherwise with the reason', () => {
    const e = ent({}, { grace_days: 10 });
    expect(inGrace(e, T0)).toBe(false);
    expect(inGrace(e, END)).toBe(false);
    expect(inGrace(e, END + 1)).toBe(true);
    expect(inGrace(e, END + 10 * DAY_MS)).toBe(true);
    expect(code(() => inGrace(e, END + 10 * DAY_MS + 1))).toEqual([
      'entitlement_inactive',
      'expired',
    ]);
    expect(code(() => inGrace(e, T0 - 1))).toEqual(['entitlement_inactive', 'pending']);
    expect(code(() => inGrace(ent({ status: 'suspended' }), T0))).toEqual([
      'entitlement_inactive',
      'suspended',
    ]);
    expect(code(() => inGrace(ent({ status: 'revoked' }), T0))).toEqual([
      'entitlement_inactive',
      'revoked',
    ]);
  });

  it('lets only holders at the end of term through grace: a seat for named policies, a lease for the others', () => {
    const named = ent();
    expect(heldAtEnd(named, undefined, seatAt(END))).toBe(true);
    expect(heldAtEnd(named, leaseAt(T0), seatAt(END + 1))).toBe(false);
    const concurrent = ent({}, { type: 'concurrent' });
    expect(heldAtEnd(concurrent, leaseAt(END), undefined)).toBe(true);
    expect(heldAtEnd(concurrent, leaseAt(END + 1), seatAt(T0))).toBe(false);
  });
});

describe('a grant', () => {
  it('leases per_user to users only, and the features asked for (each once) or all', () => {
    expect(code(() => checkSubjectType(ent(), 'machine'))).toEqual(['invalid_request', null]);
    expect(code(() => checkSubjectType(ent({}, { type: 'concurrent' }), 'machine'))).toBeNull();
    expect(grantedFeatures(ent(), undefined)).toEqual(['a', 'b']);
    expect(grantedFeatures(ent(), ['b', 'b'])).toEqual(['b']);
    expect(code(() => grantedFeatures(ent(), ['c']))).toEqual(['feature_not_entitled', null]);
  });

  it('ends a lease after its TTL, never past the end of grace, and refuses one under a second', () => {
    const e = ent({}, { grace_days: 1 });
    expect(leaseExpiry(e, T0, 3600)).toBe(T0 + 3_600_000);
    const graceEnd = END + DAY_MS;
    expect(leaseExpiry(e, graceEnd - 5000, 3600)).toBe(graceEnd);
    expect(code(() => leaseExpiry(e, graceEnd, 3600))).toEqual(['entitlement_inactive', 'expired']);
  });

  it('answers the most actionable of several refusals, whatever their order', () => {
    const err = (c: 'not_found' | 'seats_exhausted' | 'clock_suspect') => new AppError(c, c);
    const order = [err('not_found'), err('seats_exhausted'), err('clock_suspect')];
    for (const seq of [order, [...order].reverse()]) {
      let best: AppError | undefined;
      for (const e of seq) best = moreActionable(best, e);
      expect(best!.code).toBe('clock_suspect');
    }
    expect(moreActionable(err('seats_exhausted'), err('not_found')).code).toBe('seats_exhausted');
  });
});

describe('check', () => {
  const none = { lease: undefined, seat: undefined };
  it('counts free seats by assignment for named policies and by leases in force for concurrent', () => {
    expect(leaseCheck(ent(), T0, none, { seatsAssigned: 1, leasesInForce: 0 }, false)).toEqual({
      canLease: true,
      remainingSeats: 1,
      reason: null,
    });
    const c = ent({}, { type: 'concurrent' });
    expect(leaseCheck(c, T0, none, { seatsAssigned: 0, leasesInForce: 2 }, false)).toEqual({
      canLease: false,
      remainingSeats: 0,
      reason: 'seats_exhausted',
    });
    // A holder may lease on a full entitlement.
    expect(
      leaseCheck(
        c,
        T0,
        { lease: leaseAt(T0), seat: undefined },
        { seatsAssigned: 0, leasesInForce: 2 },
        false,
      ).canLease,
    ).toBe(true);
  });

  it('gives the reason a grant would be refused: grace newcomer, manual seats, a suspect clock on a bundle', () => {
    expect(
      leaseCheck(ent(), END + 1, none, { seatsAssigned: 0, leasesInForce: 0 }, false).reason,
    ).toBe('expired');
    const manual = ent({}, { seat_assignment: 'manual' });
    expect(leaseCheck(manual, T0, none, { seatsAssigned: 0, leasesInForce: 0 }, false).reason).toBe(
      'seat_not_assigned',
    );
    expect(
      leaseCheck(ent({ source: 'bundle' }), T0, none, { seatsAssigned: 0, leasesInForce: 0 }, true)
        .reason,
    ).toBe('clock_suspect');
    expect(
      leaseCheck(ent(), T0, none, { seatsAssigned: 0, leasesInForce: 0 }, true).reason,
    ).toBeNull();
  });
});

describe('floating extras', () => {
  const HOUR = 3_600_000;
  const floating = (policy: Partial<Entitlement['policy']>) =>
    ent({}, { type: 'concurrent', max_seats: 2, ...policy });

  it('overdraft: a named seat past max_seats is an overdraft one, past the ceiling a refusal', () => {
    const e = ent({}, { overdraft_seats: 1 });
    expect(seatCeiling(e)).toBe(3);
    expect(checkSeatLeft(e, 1)).toBe(false);
    expect(checkSeatLeft(e, 2)).toBe(true);
    expect(code(() => checkSeatLeft(e, 3))).toEqual(['seats_exhausted', null]);
    expect(concurrentFull(floating({ overdraft_seats: 1 }), 2)).toBe(false);
    expect(concurrentFull(floating({ overdraft_seats: 1 }), 3)).toBe(true);
    expect(seatsInUse(floating({ overdraft_seats: 1 })).details).toEqual({
      entitlement_id: 'ent_r',
      max_seats: 2,
      overdraft_seats: 1,
    });
  });

  it('borrowing: off by default, capped by max_borrow_hours and the end of term plus grace', () => {
    expect(code(() => borrowExpiry(floating({}), T0, 1))).toEqual(['invalid_request', null]);
    const e = floating({ max_borrow_hours: 72 });
    expect(borrowExpiry(e, T0, 72)).toBe(T0 + 72 * HOUR);
    expect(code(() => borrowExpiry(e, T0, 73))).toEqual(['invalid_request', null]);
    const late = END - HOUR;
    expect(borrowExpiry(floating({ max_borrow_hours: 72, grace_days: 0 }), late, 72)).toBe(END);
  });

  it('caps: borrowed seats and instances; only a plain seat shortage may queue', () => {
    const e = floating({ max_borrowed_seats: 1, max_instances_per_subject: 2 });
    expect(() => checkBorrowLeft(e, 0)).not.toThrow();
    expect(code(() => checkBorrowLeft(e, 1))).toEqual(['seats_exhausted', 'borrow_limit']);
    expect(() => checkBorrowLeft(floating({}), 1000)).not.toThrow();
    expect(() => checkInstanceLeft(e, 1)).not.toThrow();
    expect(code(() => checkInstanceLeft(e, 2))).toEqual(['seats_exhausted', 'instance_limit']);
    expect(isSeatShortage(seatsInUse(e))).toBe(true);
    const refusal = (fn: () => unknown): AppError => {
      try {
        fn();
      } catch (err) {
        return err as AppError;
      }
      throw new Error('no refusal');
    };
    expect(isSeatShortage(refusal(() => checkBorrowLeft(e, 1)))).toBe(false);
    expect(isSeatShortage(refusal(() => checkInstanceLeft(e, 2)))).toBe(false);
  });

  it('leaseCheck counts overdraft seats as free', () => {
    const e = floating({ overdraft_seats: 1 });
    const use = { seatsAssigned: 0, leasesInForce: 2 };
    const held = { lease: undefined, seat: undefined };
    expect(leaseCheck(e, T0 + HOUR, held, use, false)).toMatchObject({
      canLease: true,
      remainingSeats: 1,
    });
  });
});

describe('refusal messages count in words', () => {
  const message = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return (err as AppError).message;
    }
    throw new Error('not refused');
  };

  it('one seat, one overdraft seat, one borrowable seat, one hour, one instance: singular', () => {
    const one = ent({}, { type: 'concurrent', max_seats: 1 });
    expect(seatsInUse(one).message).toBe('the 1 seat of ent_r is in use');
    const over = ent({}, { type: 'concurrent', max_seats: 1, overdraft_seats: 1 });
    expect(seatsInUse(over).message).toBe(
      'the 1 seat of ent_r and its 1 overdraft seat are in use',
    );
    expect(message(() => checkSeatLeft(ent({}, { max_seats: 1 }), 1))).toBe(
      'the 1 seat of ent_r is assigned',
    );
    expect(message(() => checkBorrowLeft(ent({}, { max_borrowed_seats: 1 }), 1))).toBe(
      'the 1 borrowable seat of ent_r is borrowed',
    );
    expect(message(() => borrowExpiry(ent({}, { max_borrow_hours: 1 }), T0, 2))).toBe(
      'ent_r allows borrowing for at most 1 hour, not 2',
    );
    expect(message(() => checkInstanceLeft(ent({}, { max_instances_per_subject: 1 }), 1))).toBe(
      'the subject runs 1 instance on ent_r, its limit (max_instances_per_subject)',
    );
  });

  it('several: plural; none borrowable: said so', () => {
    const two = ent({}, { type: 'concurrent', max_seats: 2, overdraft_seats: 3 });
    expect(seatsInUse(two).message).toBe(
      'all 2 seats of ent_r and its 3 overdraft seats are in use',
    );
    expect(message(() => checkSeatLeft(ent({}, { max_seats: 2 }), 2))).toBe(
      'all 2 seats of ent_r are assigned',
    );
    expect(message(() => checkBorrowLeft(ent({}, { max_borrowed_seats: 0 }), 0))).toBe(
      'no seat of ent_r may be borrowed (max_borrowed_seats is 0)',
    );
  });
});

// The small rules with one home in the domain: derived status (and the bounds a store filters
// with), named-seat policies and their subject type, keyset paging.
import { describe, expect, it } from 'vitest';
import {
  DAY_MS,
  deriveStatus,
  graceDays,
  hasNamedSeats,
  policySubjectType,
  ENTITLEMENT_STATUSES,
  POLICY_TYPES,
  statusBounds,
  type Entitlement,
  type EntitlementStatus,
  type StatusBounds,
  type StoredStatus,
  type TimeBound,
} from './types.ts';
import { decodeCursor, encodeCursor, pageOf } from './cursor.ts';
import { AppError } from '../errors.ts';

const STATUSES: readonly EntitlementStatus[] = ENTITLEMENT_STATUSES;

/** What a store does with bounds, spelt out: every given comparison on the stored values. */
function holds(b: StatusBounds, e: Entitlement): boolean {
  const within = (v: number, t: TimeBound | undefined) =>
    t === undefined ||
    ((t.gt === undefined || v > t.gt) &&
      (t.gte === undefined || v >= t.gte) &&
      (t.lt === undefined || v < t.lt) &&
      (t.lte === undefined || v <= t.lte));
  return (
    e.status === b.stored &&
    within(e.startsAt, b.startsAt) &&
    within(e.endsAt, b.endsAt) &&
    within(e.endsAt + graceDays(e.policy) * DAY_MS, b.graceEnd)
  );
}

function entitlement(
  status: StoredStatus,
  startsAt: number,
  endsAt: number,
  grace: number | undefined,
): Entitlement {
  return {
    id: 'ent_x',
    tenantId: 't',
    productId: 'p',
    policy: {
      type: 'concurrent',
      max_seats: 1,
      ...(grace === undefined ? {} : { grace_days: grace }),
    },
    startsAt,
    endsAt,
    status,
    source: 'manual',
    externalId: null,
    rev: null,
    createdAt: 0,
    updatedAt: 0,
  };
}

describe('derived status', () => {
  it('statusBounds(s, now) holds for exactly the entitlements deriveStatus calls s at now, at every edge', () => {
    const now = 1_000 * DAY_MS;
    // Times around each edge: a millisecond before, at, a millisecond after.
    const around = (t: number) => [t - 1, t, t + 1];
    let cases = 0;
    for (const stored of ['active', 'suspended', 'revoked'] as const)
      for (const grace of [undefined, 0, 1, 30])
        for (const startsAt of [...around(now), now - 90 * DAY_MS])
          for (const endsAt of [
            ...around(now),
            ...around(now - (grace ?? 30) * DAY_MS),
            now + 90 * DAY_MS,
            now - 90 * DAY_MS,
          ]) {
            if (endsAt <= startsAt) continue;
            const e = entitlement(stored, startsAt, endsAt, grace);
            const derived = deriveStatus(e, now);
            const matching = STATUSES.filter((s) => holds(statusBounds(s, now), e));
            expect(matching, JSON.stringify({ stored, grace, startsAt, endsAt })).toEqual([
              derived,
            ]);
            cases++;
          }
    expect(cases).toBeGreaterThan(100);
  });
});

describe('named seats and subject types', () => {
  it('per_user and per_machine seat named subjects, users and machines; the others lease to either', () => {
    expect(POLICY_TYPES.filter(hasNamedSeats)).toEqual(['per_user', 'per_machine']);
    expect(POLICY_TYPES.map(policySubjectType)).toEqual(['user', 'machine', null, null]);
  });
});

describe('keyset paging', () => {
  it('gives a cursor to the last row shown only when a row beyond the limit was read', () => {
    const rows = [{ seq: 3 }, { seq: 7 }, { seq: 9 }];
    expect(pageOf(rows.slice(0, 2), 2, (r) => encodeCursor('x', r.seq))).toEqual({
      items: rows.slice(0, 2),
      nextCursor: null,
    });
    const page = pageOf(rows, 2, (r) => encodeCursor('x', r.seq));
    expect(page.items).toEqual(rows.slice(0, 2));
    expect(decodeCursor('x', page.nextCursor!, /^\d+$/)).toBe('7');
    // Another list's cursor is refused, not misread.
    expect(() => decodeCursor('y', page.nextCursor!, /^\d+$/)).toThrow(AppError);
  });
});

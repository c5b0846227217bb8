import { describe, expect, it } from 'vitest';
import { addMonths } from './entitlements.ts';
import { deriveStatus } from './types.ts';
import { parseWith, policySchema } from '../schemas.ts';

const at = (s: string) => Date.parse(s);

describe('addMonths', () => {
  it.each([
    ['2024-12-31T23:59:59Z', 12, '2025-12-31T23:59:59.000Z'],
    ['2024-01-31T00:00:00Z', 1, '2024-02-29T00:00:00.000Z'],
    ['2023-01-31T00:00:00Z', 1, '2023-02-28T00:00:00.000Z'],
    ['2024-02-29T12:00:00Z', 12, '2025-02-28T12:00:00.000Z'],
    ['2024-11-15T00:00:00Z', 3, '2025-02-15T00:00:00.000Z'],
  ])('%s + %i months = %s, clamping the day', (from, months, to) => {
    expect(new Date(addMonths(at(from), months)).toISOString()).toBe(to);
  });
});

describe('deriveStatus', () => {
  const e = {
    status: 'active' as const,
    startsAt: at('2024-01-01T00:00:00Z'),
    endsAt: at('2024-12-31T23:59:59Z'),
    policy: { type: 'concurrent' as const, max_seats: 1 },
  };
  it('follows the clock through pending, active, grace (30 days by default) and expired', () => {
    expect(deriveStatus(e, at('2023-12-31T23:59:59Z'))).toBe('pending');
    expect(deriveStatus(e, at('2024-01-01T00:00:00Z'))).toBe('active');
    expect(deriveStatus(e, at('2024-12-31T23:59:59Z'))).toBe('active');
    expect(deriveStatus(e, at('2025-01-01T00:00:00Z'))).toBe('grace');
    expect(deriveStatus(e, at('2025-01-30T23:59:59Z'))).toBe('grace');
    expect(deriveStatus(e, at('2025-01-31T00:00:00Z'))).toBe('expired');
  });
  it('puts suspended and revoked above time', () => {
    expect(deriveStatus({ ...e, status: 'suspended' }, at('2024-06-01T00:00:00Z'))).toBe(
      'suspended',
    );
    expect(deriveStatus({ ...e, status: 'revoked' }, at('2023-06-01T00:00:00Z'))).toBe('revoked');
  });
});

describe('policy validation', () => {
  it.each([
    [{ type: 'concurrent' }, 'max_seats: max_seats is required for concurrent'],
    [{ type: 'feature_based', max_seats: 3 }, 'max_seats: feature_based has no seat limit'],
    [{ type: 'unlimited', max_seats: 3 }, 'max_seats: unlimited has no seat limit'],
    [{ type: 'individual', max_seats: 2 }, 'max_seats: an individual license has exactly 1 seat'],
    [
      { type: 'concurrent', max_seats: 1, seat_assignment: 'manual' },
      'seat_assignment: seat_assignment applies to per_user and per_machine only',
    ],
    [{ type: 'concurrent', max_seats: 0 }, 'max_seats'],
    [{ type: 'concurrent', max_seats: 2.5 }, 'max_seats'],
    [{ type: 'concurrent', max_seats: 1, features: ['a', 'a'] }, 'features must not repeat'],
    [{ type: 'concurrent', max_seats: 1, features: ['has space'] }, 'features are letters'],
    [{ type: 'concurrent', max_seats: 1, colour: 'red' }, 'Unrecognized key'],
  ])('refuses %j', (policy, message) => {
    expect(() => parseWith(policySchema, policy, 'policy')).toThrow(message);
  });

  it('keeps what was given, in normal form', () => {
    expect(
      parseWith(policySchema, {
        type: 'per_machine',
        max_seats: 5,
        seat_assignment: 'manual',
        grace_days: 0,
        lease_ttl_seconds: 600,
      }),
    ).toEqual({
      type: 'per_machine',
      max_seats: 5,
      seat_assignment: 'manual',
      grace_days: 0,
      lease_ttl_seconds: 600,
    });
  });
});

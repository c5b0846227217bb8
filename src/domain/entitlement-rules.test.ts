// The entitlement rules both writers ask (the admin's manual path and vendor bundles): pure
// functions, so every combination is listed here; test/sync/rules.test.ts runs both paths on a
// real database.
import { describe, expect, it } from 'vitest';
import {
  changeRefusal,
  cutsSeats,
  manualChangeError,
  movesAccount,
  policyTypeLocked,
  revisionRefusal,
  termIsValid,
  termWarnings,
  type ManualAction,
} from './entitlement-rules.ts';
import type { Entitlement, Source, StoredStatus } from './types.ts';

function ent(source: Source, status: StoredStatus): Entitlement {
  return {
    id: 'ent_x',
    tenantId: 'acme',
    productId: 'cad',
    policy: { type: 'concurrent', max_seats: 5 },
    startsAt: 0,
    endsAt: 1000,
    status,
    source,
    externalId: null,
    rev: source === 'bundle' ? 1 : null,
    createdAt: 0,
    updatedAt: 0,
  };
}

describe('changeRefusal: one owner, and revoked is final', () => {
  it('refuses a revoked entitlement to its own writer with the same rule, manual or bundle', () => {
    expect(changeRefusal(ent('manual', 'revoked'), 'manual')).toBe('revoked_is_final');
    expect(changeRefusal(ent('bundle', 'revoked'), 'bundle')).toBe('revoked_is_final');
  });

  it('refuses the other writer by ownership first, whatever the status', () => {
    for (const status of ['active', 'suspended', 'revoked'] as const) {
      expect(changeRefusal(ent('bundle', status), 'manual')).toBe('owned_by_bundle');
      expect(changeRefusal(ent('manual', status), 'bundle')).toBe('owned_by_customer');
    }
  });

  it('lets the owner change an active or suspended entitlement, and anyone create a new id', () => {
    for (const source of ['manual', 'bundle'] as const)
      for (const status of ['active', 'suspended'] as const)
        expect(changeRefusal(ent(source, status), source)).toBeNull();
    expect(changeRefusal(undefined, 'manual')).toBeNull();
    expect(changeRefusal(undefined, 'bundle')).toBeNull();
  });

  it('keeps an id revoked in advance (the permanent list) revoked, stored or not', () => {
    expect(changeRefusal(undefined, 'bundle', true)).toBe('revoked_is_final');
    expect(changeRefusal(ent('bundle', 'active'), 'bundle', true)).toBe('revoked_is_final');
  });
});

describe('manualChangeError: what the admin is answered', () => {
  const actions: ManualAction[] = ['update', 'suspend', 'resume', 'revoke', 'renew'];

  it('answers managed_by_bundle (409) for every action on a bundle entitlement, revoked or not', () => {
    for (const status of ['active', 'revoked'] as const)
      for (const a of actions) {
        const err = manualChangeError(ent('bundle', status), a);
        expect(err?.code).toBe('managed_by_bundle');
        expect(err?.status).toBe(409);
        expect(err?.details).toEqual({ entitlement_id: 'ent_x' });
        expect(err?.message).toBe(
          'ent_x is managed by vendor bundles; only a newer bundle can change it',
        );
      }
  });

  it('answers conflict (409) for every action on a revoked manual entitlement, in its own words', () => {
    const words: Record<ManualAction, string> = {
      update: 'ent_x is revoked; a revoked entitlement cannot be changed',
      suspend: 'ent_x is revoked; it cannot be suspended',
      resume: 'ent_x is revoked; revocation is final',
      revoke: 'ent_x is revoked already',
      renew: 'ent_x is revoked; it cannot be renewed',
    };
    for (const a of actions) {
      const err = manualChangeError(ent('manual', 'revoked'), a);
      expect(err?.code).toBe('conflict');
      expect(err?.status).toBe(409);
      expect(err?.message).toBe(words[a]);
    }
  });

  it('refuses suspending a suspended one and resuming an active one, and lets the rest go on', () => {
    expect(manualChangeError(ent('manual', 'suspended'), 'suspend')?.message).toBe(
      'ent_x is suspended already',
    );
    expect(manualChangeError(ent('manual', 'active'), 'resume')?.message).toBe(
      'ent_x is not suspended',
    );
    for (const a of ['update', 'suspend', 'revoke', 'renew'] as const)
      expect(manualChangeError(ent('manual', 'active'), a)).toBeUndefined();
    for (const a of ['update', 'resume', 'revoke', 'renew'] as const)
      expect(manualChangeError(ent('manual', 'suspended'), a)).toBeUndefined();
  });
});

describe('terms, accounts, revisions, seats', () => {
  it('wants a term that ends after it starts', () => {
    expect(termIsValid(0, 1)).toBe(true);
    expect(termIsValid(1, 1)).toBe(false);
    expect(termIsValid(2, 1)).toBe(false);
  });

  it('never moves an entitlement to another tenant or product', () => {
    const e = ent('manual', 'active');
    expect(movesAccount(e, { tenantId: 'acme', productId: 'cad' })).toBe(false);
    expect(movesAccount(e, { tenantId: 'other', productId: 'cad' })).toBe(true);
    expect(movesAccount(e, { tenantId: 'acme', productId: 'other' })).toBe(true);
  });

  it('holds a bundle record to the vendor revision: never lower, higher with every change', () => {
    expect(revisionRefusal(3, 2, false)).toBe('rollback');
    expect(revisionRefusal(3, 2, true)).toBe('rollback');
    expect(revisionRefusal(3, 3, true)).toBe('same_rev');
    expect(revisionRefusal(3, 3, false)).toBeNull();
    expect(revisionRefusal(3, 4, true)).toBeNull();
    // Never came in a bundle: no revision to hold it to.
    expect(revisionRefusal(null, 0, true)).toBeNull();
  });

  it('locks the policy type while leases or seats run under it', () => {
    const from = { type: 'concurrent' as const, max_seats: 5 };
    const to = { type: 'per_user' as const, max_seats: 5 };
    expect(policyTypeLocked(from, to, { activeLeases: 1, seatsAssigned: 0 })).toBe(true);
    expect(policyTypeLocked(from, to, { activeLeases: 0, seatsAssigned: 1 })).toBe(true);
    expect(policyTypeLocked(from, to, { activeLeases: 0, seatsAssigned: 0 })).toBe(false);
    expect(
      policyTypeLocked(from, { ...from, max_seats: 1 }, { activeLeases: 9, seatsAssigned: 9 }),
    ).toBe(false);
  });

  it('calls a limit under current use a seat cut, and no limit never one', () => {
    expect(cutsSeats({ type: 'concurrent', max_seats: 2 }, 3)).toBe(true);
    expect(cutsSeats({ type: 'concurrent', max_seats: 3 }, 3)).toBe(false);
    expect(cutsSeats({ type: 'feature_based' }, 1_000)).toBe(false);
  });
});

describe('termWarnings: a term written at now that has ended or not begun is said, not refused', () => {
  const t = (iso: string) => Date.parse(iso);
  const term = { startsAt: t('2024-01-01T00:00:00Z'), endsAt: t('2024-12-31T23:59:59Z') };
  it.each([
    ['2023-12-31T23:59:59Z', [{ code: 'not_started', at: term.startsAt }]],
    ['2024-01-01T00:00:00Z', []],
    ['2024-12-31T23:59:59Z', []],
    ['2025-01-01T00:00:00Z', [{ code: 'already_expired', at: term.endsAt }]],
  ])('at %s: %j', (now, want) => {
    expect(termWarnings(term, t(now))).toEqual(want);
  });
});

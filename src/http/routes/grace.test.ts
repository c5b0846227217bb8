// Issue 11.4: nobody new gets a lease during grace, by any route. The rule (README "Grace"): after
// ends_at only a subject that held on at the end of term may lease or renew: a seat assigned at or
// before ends_at (per_user, per_machine), an active lease granted at or before it (concurrent,
// feature_based). Seats are not assigned after ends_at.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { verifyLeaseToken } from '../../../clients/typescript/src/index.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

// The seed entitlement ends 2024-12-31T23:59:59Z; with grace_days 30, grace runs to 2025-01-30T23:59:59Z.
const IN_GRACE = '2025-01-10T00:00:00Z';
const GRACE_ENDS = '2025-01-30T23:59:59.000Z';
const subject = (id: string, type = 'user') => ({
  product_id: 'your-product-id',
  tenant_id: 'customer-tenant-id',
  subject_type: type,
  subject_id: id,
});
const lease = (id: string, type = 'user') =>
  h.req('POST', '/v1/license/lease', subject(id, type), null);
const renew = (id: string) => h.req('POST', '/v1/license/lease/renew', { lease_id: id }, null);
async function entitlement(policy: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const r = await h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    policy_json: { grace_days: 30, ...policy },
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.entitlement_id as string;
}
const seatIds = (e: string) =>
  h.store.db
    .prepare('SELECT subject_id FROM seats WHERE entitlement_id = ? ORDER BY assigned_at, id')
    .pluck()
    .all(e);
const tenantAdmin = () =>
  h.services.apiTokens.create(
    { name: 'tenant admin', role: 'tenant_admin', tenantId: 'customer-tenant-id' },
    'test',
  ).token;
const keys = async () => (await h.req('GET', '/v1/license/keys', undefined, null)).body;

function expectNewcomerRefused(r: { status: number; body: any }, status = 'grace') {
  expect(r.status, JSON.stringify(r.body)).toBe(403);
  expect(r.body.error).toMatchObject({
    code: 'entitlement_inactive',
    details: { reason: 'expired', status },
  });
}

describe('per_user in grace: the example of issue 11', () => {
  it('refuses a newcomer, refuses the admin seat for the newcomer by every route, and still serves the holder', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 3 });
    expect((await lease('alice')).status).toBe(201);
    h.clock.set(IN_GRACE);
    const token = tenantAdmin();

    const newcomer = await lease('bob');
    expectNewcomerRefused(newcomer);
    expect(newcomer.body.error.details.grace_ends_at).toBe(GRACE_ENDS);

    const before = h.snapshot();
    expectNewcomerRefused(
      await h.req(
        'POST',
        `/v1/entitlements/${e}/seats`,
        { subject_type: 'user', subject_id: 'bob' },
        token,
      ),
    );
    expectNewcomerRefused(
      await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'bob' }, token),
    );
    expectNewcomerRefused(
      await h.req(
        'POST',
        `/v1/entitlements/${e}/seats/bulk`,
        { subjects: [{ subject_type: 'user', subject_id: 'bob' }] },
        token,
      ),
    );
    expectNewcomerRefused(
      await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, { principal_ids: ['bob', 'carol'] }),
    );
    expect(h.snapshot()).toEqual(before);
    expectNewcomerRefused(await lease('bob'));
    expect(seatIds(e)).toEqual(['alice']);

    // The holder: a seat from before ends_at. Her first lease ran out; she takes a new one, in grace.
    const again = await lease('ALICE');
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(again.body.grace).toBe(true);
    expect(verifyLeaseToken(again.body.token, await keys(), { now: h.clock.now() }).grace).toBe(
      true,
    );
    expect((await renew(again.body.lease_id)).body.grace).toBe(true);
    const check = async (q: string) => (await h.req('GET', `/v1/entitlements/${e}/check${q}`)).body;
    expect(await check('?subject_id=Alice')).toMatchObject({
      status: 'grace',
      can_lease: true,
      reason: null,
    });
    expect(await check('?subject_id=bob')).toMatchObject({
      status: 'grace',
      can_lease: false,
      reason: 'expired',
    });

    // After grace: nobody, and no seats either.
    h.clock.set('2025-02-01T00:00:00Z');
    expectNewcomerRefused(
      await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'bob' }),
      'expired',
    );
    expect((await lease('alice')).body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'expired' },
    });
  });

  it('renewing the entitlement lets the admin assign the seat again', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 3 });
    h.clock.set(IN_GRACE);
    expectNewcomerRefused(
      await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'bob' }),
    );
    expect((await h.req('POST', `/v1/entitlements/${e}/renew`, { period_months: 12 })).status).toBe(
      200,
    );
    expect(
      (await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'bob' })).status,
    ).toBe(201);
    const l = await lease('bob');
    expect(l.status).toBe(201);
    expect(l.body.grace).toBeUndefined();
  });
});

describe('a seat assigned after ends_at does not make a holder', () => {
  it('when the end of term moves before the seat (an admin update), its holder is a newcomer: no lease, no renewal', async () => {
    const e = await entitlement(
      { type: 'per_user', max_seats: 3, seat_assignment: 'manual', lease_ttl_seconds: 30 * 86_400 },
      { ends_at: '2025-06-30T00:00:00Z' },
    );
    expect(
      (await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'alice' })).status,
    ).toBe(201);
    h.clock.set('2024-03-01T00:00:00Z');
    expect(
      (await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'bob' })).status,
    ).toBe(201);
    const bobLease = await lease('bob');
    expect(bobLease.status).toBe(201);
    // The term is cut to mid-February: alice's seat predates the end, bob's does not.
    const put = await h.req('PUT', `/v1/entitlements/${e}`, { ends_at: '2024-02-15T00:00:00Z' });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    h.clock.set('2024-03-02T00:00:00Z');

    expectNewcomerRefused(await renew(bobLease.body.lease_id));
    expectNewcomerRefused(await lease('bob'));
    const a = await lease('alice');
    expect(a.status).toBe(201);
    expect(a.body.grace).toBe(true);
    expect((await h.req('GET', `/v1/entitlements/${e}/check?subject_id=BOB`)).body).toMatchObject({
      can_lease: false,
      reason: 'expired',
    });
  });

  it('the same through the bulk import (upsert by external_id)', async () => {
    const item = (ends: string) => ({
      ...seedEntitlement,
      external_id: 'crm-42',
      policy_json: { type: 'per_user', max_seats: 5, grace_days: 30 },
      ends_at: ends,
    });
    expect(
      (
        await h.req('POST', '/v1/entitlements/import', {
          entitlements: [item('2025-06-30T00:00:00Z')],
        })
      ).status,
    ).toBeLessThan(300);
    const e = h.store.entitlements.getByExternalId('crm-42')!.id;
    expect((await lease('alice')).status).toBe(201);
    h.clock.set('2024-03-01T00:00:00Z');
    expect((await lease('bob')).status).toBe(201);
    const up = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [item('2024-02-15T00:00:00Z')],
    });
    expect(up.status, JSON.stringify(up.body)).toBeLessThan(300);
    expect(h.store.entitlements.get(e)!.endsAt).toBe(Date.parse('2024-02-15T00:00:00Z'));
    h.clock.set('2024-03-02T00:00:00Z');
    expectNewcomerRefused(await lease('bob'));
    expect((await lease('alice')).body.grace).toBe(true);
  });
});

describe('per_machine and concurrent in grace', () => {
  it('per_machine: a machine seated before the end leases; seats are not assigned in grace', async () => {
    const e = await entitlement({ type: 'per_machine', max_seats: 2, seat_assignment: 'manual' });
    expect(
      (await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'ws-01' })).status,
    ).toBe(201);
    h.clock.set(IN_GRACE);
    expectNewcomerRefused(
      await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'ws-02' }),
    );
    expectNewcomerRefused(await lease('ws-02', 'machine'));
    const l = await lease('WS-01', 'machine');
    expect(l.status).toBe(201);
    expect(l.body.grace).toBe(true);
    expect(seatIds(e)).toEqual(['ws-01']);
  });

  it('concurrent: a lease from before the end is refreshed under any spelling; once released, its subject is a newcomer', async () => {
    await entitlement({ type: 'concurrent', max_seats: 5, lease_ttl_seconds: 20 * 86_400 });
    h.clock.set('2024-12-31T23:00:00Z');
    const l = await lease('holder');
    h.clock.set(IN_GRACE);
    const again = await lease('HOLDER');
    expect(again.status).toBe(201);
    expect(again.body).toMatchObject({ lease_id: l.body.lease_id, grace: true });
    expectNewcomerRefused(await lease('newcomer'));
    await h.req('POST', '/v1/license/lease/release', { lease_id: l.body.lease_id }, null);
    expectNewcomerRefused(await lease('holder'));
  });

  it('feature_based: the same rule, no seats', async () => {
    await entitlement({ type: 'feature_based', lease_ttl_seconds: 20 * 86_400 });
    h.clock.set('2024-12-31T23:00:00Z');
    const l = await lease('holder');
    h.clock.set(IN_GRACE);
    expect((await renew(l.body.lease_id)).body.grace).toBe(true);
    expectNewcomerRefused(await lease('newcomer'));
  });
});

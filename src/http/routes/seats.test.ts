import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const DAY = 86_400_000;
async function entitlement(policy: Record<string, unknown>) {
  return (await h.req('POST', '/v1/entitlements', { ...seedEntitlement, policy_json: policy })).body
    .entitlement_id as string;
}
const lease = (id: string, type = 'user') =>
  h.req(
    'POST',
    '/v1/license/lease',
    {
      product_id: 'your-product-id',
      tenant_id: 'customer-tenant-id',
      subject_type: type,
      subject_id: id,
    },
    null,
  );
const seatCount = (e: string) =>
  (
    h.store.db.prepare('SELECT count(*) AS n FROM seats WHERE entitlement_id = ?').get(e) as {
      n: number;
    }
  ).n;

describe('named seats', () => {
  it('assigns, lists and revokes seats; the marketplace principal_id form works too', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 3, seat_assignment: 'manual' });
    const a = await h.req('POST', `/v1/entitlements/${e}/seats`, {
      subject_type: 'user',
      subject_id: 'alice',
    });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({
      entitlement_id: e,
      subject_type: 'user',
      subject_id: 'alice',
      assigned_at: '2024-01-15T10:30:00Z',
    });
    expect(a.body.seat_id).toMatch(/^seat_/);
    const b = await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'user_xxx' });
    expect(b.body).toMatchObject({ subject_type: 'user', subject_id: 'user_xxx' });
    const list = await h.req('GET', `/v1/entitlements/${e}/seats`);
    expect(list.body.data.map((s: any) => s.subject_id).sort()).toEqual(['alice', 'user_xxx']);
    const del = await h.req('DELETE', `/v1/entitlements/${e}/seats/${a.body.seat_id}`);
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({
      seat_id: a.body.seat_id,
      revoked: true,
      ended_lease_id: null,
    });
    expect(seatCount(e)).toBe(1);
    expect(h.store.leases.counters(e).seatsAssigned).toBe(1);
    expect((await h.req('DELETE', `/v1/entitlements/${e}/seats/${a.body.seat_id}`)).status).toBe(
      404,
    );
    const actions = h.store.audit.page(0, 100).map((r) => r.action);
    expect(actions.filter((x) => x.startsWith('seat.'))).toEqual([
      'seat.assign',
      'seat.assign',
      'seat.revoke',
    ]);
  });

  it('bulk-assigns all or nothing, with no double seats', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 4 });
    const ok = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      principal_ids: ['user_1', 'user_2', 'user_3'],
    });
    expect(ok.status).toBe(201);
    expect(ok.body.assigned).toBe(3);
    const before = h.snapshot();
    const dup = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      subjects: [
        { subject_type: 'user', subject_id: 'user_4' },
        { subject_type: 'user', subject_id: 'user_2' },
      ],
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toMatchObject({
      code: 'conflict',
      message: '1 of 2 subjects cannot take a seat; no seat was assigned',
    });
    expect(dup.body.error.details.errors).toEqual([
      { index: 1, subject: 'user:user_2', message: 'holds a seat already' },
    ]);
    const twice = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      principal_ids: ['user_9', 'user_9'],
    });
    expect(twice.body.error.details.errors[0].message).toBe('listed twice');
    const over = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      principal_ids: ['user_8', 'user_9'],
    });
    expect(over.status).toBe(409);
    expect(over.body.error).toMatchObject({
      code: 'seats_exhausted',
      message: `${e} has 1 free of 4 seats; 2 asked`,
    });
    expect(h.snapshot()).toEqual(before);
  });

  it('refuses seats on concurrent and feature_based entitlements, and machine seats on per_user', async () => {
    const c = await entitlement({ type: 'concurrent', max_seats: 4 });
    const r = await h.req('POST', `/v1/entitlements/${c}/seats`, {
      subject_type: 'user',
      subject_id: 'alice',
    });
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain(
      'only per_user and per_machine entitlements have named seats',
    );
    const u = await entitlement({ type: 'per_user', max_seats: 4 });
    const m = await h.req('POST', `/v1/entitlements/${u}/seats`, {
      subject_type: 'machine',
      subject_id: 'm1',
    });
    expect(m.body.error.details.errors[0].message).toBe('per_user seats are for subject_type user');
  });

  it('refuses unassigned subjects with seat_not_assigned when assignment is manual', async () => {
    const e = await entitlement({ type: 'per_machine', max_seats: 2, seat_assignment: 'manual' });
    const refused = await lease('m1', 'machine');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('seat_not_assigned');
    await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'm1' });
    expect((await lease('m1', 'machine')).status).toBe(201);
  });

  it('ends the running lease of a revoked seat: its next renewal is refused', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 2 });
    const l = await lease('alice');
    const seat = (await h.req('GET', `/v1/entitlements/${e}/seats`)).body.data[0];
    expect(seat.assigned_by).toBe('auto');
    const del = await h.req('DELETE', `/v1/entitlements/${e}/seats/${seat.seat_id}`);
    expect(del.body.ended_lease_id).toBe(l.body.lease_id);
    const r = await h.req('POST', '/v1/license/lease/renew', { lease_id: l.body.lease_id }, null);
    expect(r.status).toBe(410);
    expect(r.body.error.code).toBe('lease_released');
    expect(h.store.leases.counters(e).activeLeases).toBe(0);
  });

  it('keeps per_user seats after a seat cut, and gives no new seat until under the limit', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 3 });
    for (const u of ['a', 'b', 'c']) expect((await lease(u)).status).toBe(201);
    await h.req('PUT', `/v1/entitlements/${e}`, {
      policy_json: { type: 'per_user', max_seats: 2 },
    });
    expect((await lease('a')).status).toBe(201);
    expect((await lease('d')).body.error.code).toBe('seats_exhausted');
    const seats = (await h.req('GET', `/v1/entitlements/${e}/seats`)).body.data;
    await h.req('DELETE', `/v1/entitlements/${e}/seats/${seats[0].seat_id}`);
    expect((await lease('d')).body.error.code).toBe('seats_exhausted');
    await h.req('DELETE', `/v1/entitlements/${e}/seats/${seats[1].seat_id}`);
    expect((await lease('d')).status).toBe(201);
  });
});

describe('check', () => {
  it('says whether a lease can be had, how many seats are left, and why not', async () => {
    const e = await entitlement({ type: 'concurrent', max_seats: 2, grace_days: 10 });
    const check = async (q = '') => (await h.req('GET', `/v1/entitlements/${e}/check${q}`)).body;
    expect(await check()).toEqual({
      entitlement_id: e,
      status: 'active',
      can_lease: true,
      remaining_seats: 2,
      reason: null,
    });
    await lease('a');
    await lease('b');
    expect(await check()).toMatchObject({
      can_lease: false,
      remaining_seats: 0,
      reason: 'seats_exhausted',
    });
    expect(await check('?subject_id=a')).toMatchObject({ can_lease: true, reason: null });
    await h.req('POST', `/v1/entitlements/${e}/suspend`);
    expect(await check('?subject_id=a')).toMatchObject({ can_lease: false, reason: 'suspended' });
    await h.req('POST', `/v1/entitlements/${e}/resume`);
    h.clock.set('2025-01-03T00:00:00Z');
    expect(await check()).toMatchObject({ status: 'grace', can_lease: false, reason: 'expired' });
  });
});

describe('usage', () => {
  it('reports the 30-day figures from a scripted history of grants, renewals, denials and releases', async () => {
    const e = await entitlement({ type: 'concurrent', max_seats: 2 });
    const a = await lease('a');
    const b = await lease('b');
    await lease('c'); // denied: full
    h.clock.advance(10 * 60_000);
    await h.req('POST', '/v1/license/lease/renew', { lease_id: a.body.lease_id }, null);
    await h.req('POST', '/v1/license/lease/release', { lease_id: b.body.lease_id }, null);
    await lease('c');
    await lease('d'); // denied
    h.clock.advance(2 * DAY);
    await h.req('POST', '/v1/license/lease/release', { lease_id: a.body.lease_id }, null);
    const r = await h.req('GET', `/v1/entitlements/${e}/usage`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      entitlement_id: e,
      tenant_id: 'customer-tenant-id',
      product_id: 'your-product-id',
      seats: { total: 2, assigned: 0, active_30d: 3 },
      leases: { active: 0, peak_30d: 2 },
      activity: { grants_30d: 3, denials_30d: 2, unique_users_30d: 3 },
    });
    h.clock.advance(31 * DAY);
    const later = await h.req('GET', `/v1/entitlements/${e}/usage`);
    expect(later.body.activity).toEqual({ grants_30d: 0, denials_30d: 0, unique_users_30d: 0 });
  });

  it('counts seats assigned and seat holders active for per_user', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 10 });
    await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, { principal_ids: ['a', 'b', 'c'] });
    await lease('a');
    const r = await h.req('GET', `/v1/entitlements/${e}/usage`);
    expect(r.body.seats).toEqual({ total: 10, assigned: 3, active_30d: 1 });
  });

  it('exports daily usage as CSV that a spreadsheet cannot turn into a formula', async () => {
    const e = (
      await h.req('POST', '/v1/entitlements', {
        ...seedEntitlement,
        tenant_id: '=HYPERLINK("x")',
        policy_json: { type: 'concurrent', max_seats: 5 },
      })
    ).body.entitlement_id;
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        product_id: 'your-product-id',
        tenant_id: '=HYPERLINK("x")',
        subject_type: 'user',
        subject_id: 'a',
      },
      null,
    );
    h.clock.advance(DAY);
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        product_id: 'your-product-id',
        tenant_id: '=HYPERLINK("x")',
        subject_type: 'user',
        subject_id: 'b',
      },
      null,
    );
    const r = await h.req('GET', `/v1/entitlements/${e}/usage.csv?days=7`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/csv');
    expect(r.text.split('\r\n')).toEqual([
      'date,entitlement_id,tenant_id,product_id,grants,renewals,releases,denials,peak_concurrent,unique_subjects,overdraft_grants,borrows',
      `2024-01-15,${e},"'=HYPERLINK(""x"")",your-product-id,1,0,0,0,1,1,0,0`,
      `2024-01-16,${e},"'=HYPERLINK(""x"")",your-product-id,1,0,0,0,2,1,0,0`,
      '',
    ]);
  });
});

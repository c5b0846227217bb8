// Issue 11.3: one person, one seat. Subjects are matched by a canonical key (NFC + Unicode case
// fold) on every route that matches them: leases, seats, status, check, the lease list, usage.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { verifyLeaseToken } from '../../../clients/typescript/src/index.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const NFC_JOSE = 'jos\u00e9';
const NFD_JOSE = 'jose\u0301';

async function entitlement(policy: Record<string, unknown>) {
  const r = await h.req('POST', '/v1/entitlements', { ...seedEntitlement, policy_json: policy });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.entitlement_id as string;
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
const seats = (e: string) =>
  h.store.db
    .prepare(
      'SELECT subject_type, subject_id, subject_key, assigned_by FROM seats WHERE entitlement_id = ? ORDER BY assigned_at, id',
    )
    .all(e);
const liveLeases = (e: string) =>
  h.store.db
    .prepare(
      "SELECT id, subject_id, subject_key FROM leases WHERE entitlement_id = ? AND state = 'active' ORDER BY seq",
    )
    .all(e) as Array<{ id: string; subject_id: string; subject_key: string }>;
const counters = (e: string) => h.store.leases.counters(e);

describe('per_user with 1 seat: one person takes one seat however the id is spelt', () => {
  it.each([
    ['alice', 'Alice', 'alice'],
    ['CORP\\alice', 'corp\\ALICE', 'corp\\alice'],
    [NFC_JOSE, NFD_JOSE, NFC_JOSE],
    [NFD_JOSE, 'JOS\u00c9', NFC_JOSE],
  ])(
    '%s then %s: one seat, one lease, and a third person is refused',
    async (first, second, key) => {
      const e = await entitlement({ type: 'per_user', max_seats: 1 });
      const a = await lease(first);
      expect(a.status, JSON.stringify(a.body)).toBe(201);
      const b = await lease(second);
      expect(b.status, JSON.stringify(b.body)).toBe(201);
      // The same lease, refreshed: never a second seat.
      expect(b.body.lease_id).toBe(a.body.lease_id);
      expect(seats(e)).toEqual([
        { subject_type: 'user', subject_id: first, subject_key: key, assigned_by: 'auto' },
      ]);
      expect(liveLeases(e)).toEqual([{ id: a.body.lease_id, subject_id: first, subject_key: key }]);
      expect(counters(e)).toEqual({ activeLeases: 1, seatsAssigned: 1 });
      // The token names the subject as first seen.
      const keys = (await h.req('GET', '/v1/license/keys', undefined, null)).body;
      expect(verifyLeaseToken(b.body.token, keys, { now: h.clock.now() }).subjectId).toBe(first);

      const other = await lease('bob');
      expect(other.status).toBe(409);
      expect(other.body.error).toMatchObject({ code: 'seats_exhausted' });
      expect(seats(e)).toHaveLength(1);
    },
  );

  it('per_machine: a host name in two cases takes one seat', async () => {
    const e = await entitlement({ type: 'per_machine', max_seats: 1 });
    const a = await lease('WS-042.corp.example', 'machine');
    const b = await lease('ws-042.CORP.EXAMPLE', 'machine');
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.body.lease_id).toBe(a.body.lease_id);
    expect(seats(e)).toEqual([
      {
        subject_type: 'machine',
        subject_id: 'WS-042.corp.example',
        subject_key: 'ws-042.corp.example',
        assigned_by: 'auto',
      },
    ]);
    expect((await lease('ws-043.corp.example', 'machine')).body.error.code).toBe('seats_exhausted');
  });

  it('concurrent: alice and ALICE hold one lease, so one seat of two stays free', async () => {
    const e = await entitlement({ type: 'concurrent', max_seats: 2 });
    const a = await lease('alice');
    const b = await lease('ALICE');
    const c = await lease('Alice');
    expect(new Set([a.body.lease_id, b.body.lease_id, c.body.lease_id]).size).toBe(1);
    expect(liveLeases(e)).toHaveLength(1);
    expect(counters(e).activeLeases).toBe(1);
    expect((await lease('bob')).status).toBe(201);
    expect((await lease('carol')).body.error.code).toBe('seats_exhausted');
    // A release by id frees it; the next spelling takes a new lease, shown as it spelt itself.
    await h.req('POST', '/v1/license/lease/release', { lease_id: a.body.lease_id }, null);
    const d = await lease('ALICE');
    expect(d.status).toBe(201);
    expect(d.body.lease_id).not.toBe(a.body.lease_id);
    expect(liveLeases(e).map((l) => l.subject_id)).toEqual(['bob', 'ALICE']);
  });
});

describe('named seats by an admin', () => {
  it('refuses a second seat for another spelling, by one, bulk and principal_ids, and changes nothing', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 5, seat_assignment: 'manual' });
    expect(
      (
        await h.req('POST', `/v1/entitlements/${e}/seats`, {
          subject_type: 'user',
          subject_id: 'CORP\\alice',
        })
      ).status,
    ).toBe(201);
    const before = h.snapshot();

    const one = await h.req('POST', `/v1/entitlements/${e}/seats`, {
      subject_type: 'user',
      subject_id: 'corp\\ALICE',
    });
    expect(one.status).toBe(409);
    expect(one.body.error.details.errors).toEqual([
      { index: 0, subject: 'user:corp\\ALICE', message: 'holds a seat already as CORP\\alice' },
    ]);

    const bulk = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      principal_ids: ['bob', 'BOB', 'carol'],
    });
    expect(bulk.status).toBe(409);
    expect(bulk.body.error.details.errors).toEqual([
      { index: 1, subject: 'user:BOB', message: 'listed twice: the same subject as index 0 (bob)' },
    ]);

    const nfd = await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, {
      subjects: [
        { subject_type: 'user', subject_id: NFC_JOSE },
        { subject_type: 'user', subject_id: NFD_JOSE },
      ],
    });
    expect(nfd.status).toBe(409);
    expect(nfd.body.error.details.errors[0]).toMatchObject({
      index: 1,
      message: `listed twice: the same subject as index 0 (${NFC_JOSE})`,
    });

    expect(h.snapshot()).toEqual(before);
    expect(counters(e).seatsAssigned).toBe(1);
  });

  it('a seat assigned as Alice lets alice lease on a manual entitlement, and revoking it ends that lease', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 1, seat_assignment: 'manual' });
    const seat = await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: 'Alice' });
    const l = await lease('alice');
    expect(l.status, JSON.stringify(l.body)).toBe(201);
    expect(seats(e)).toHaveLength(1);
    expect(liveLeases(e)).toEqual([
      { id: l.body.lease_id, subject_id: 'alice', subject_key: 'alice' },
    ]);
    const del = await h.req('DELETE', `/v1/entitlements/${e}/seats/${seat.body.seat_id}`);
    expect(del.body).toMatchObject({ revoked: true, ended_lease_id: l.body.lease_id });
    expect(liveLeases(e)).toEqual([]);
    expect((await lease('ALICE')).body.error.code).toBe('seat_not_assigned');
  });
});

describe('reads match any spelling', () => {
  it('status, check and the lease list find the subject under another spelling', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 1 });
    const l = await lease('CORP\\alice');
    const status = await h.req(
      'GET',
      `/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=${encodeURIComponent('corp\\ALICE')}`,
    );
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({
      entitlement_id: e,
      current_lease: { lease_id: l.body.lease_id },
      usage: { seats_assigned: 1, seat_held: true },
    });

    const check = await h.req(
      'GET',
      `/v1/entitlements/${e}/check?subject_id=${encodeURIComponent('Corp\\Alice')}`,
    );
    expect(check.body).toMatchObject({ can_lease: true, remaining_seats: 0, reason: null });
    expect((await h.req('GET', `/v1/entitlements/${e}/check?subject_id=bob`)).body).toMatchObject({
      can_lease: false,
      reason: 'seats_exhausted',
    });

    const list = await h.req('GET', `/v1/leases?subject_id=${encodeURIComponent('CORP\\ALICE')}`);
    expect(list.body.data.map((x: any) => [x.lease_id, x.subject_id])).toEqual([
      [l.body.lease_id, 'CORP\\alice'],
    ]);
  });

  it('usage counts unique subjects canonically', async () => {
    const e = await entitlement({ type: 'per_user', max_seats: 3 });
    for (const id of ['alice', 'Alice', 'ALICE', NFC_JOSE, NFD_JOSE, 'bob'])
      expect((await lease(id)).status).toBe(201);
    const u = await h.req('GET', `/v1/entitlements/${e}/usage`);
    expect(u.body).toMatchObject({
      seats: { total: 3, assigned: 3, active_30d: 3 },
      leases: { active: 3 },
      activity: { grants_30d: 3, unique_users_30d: 3 },
    });
    const csv = await h.req('GET', `/v1/entitlements/${e}/usage.csv`);
    expect(csv.status).toBe(200);
    const [head, first] = csv.text.split('\r\n');
    expect(first!.split(',')[head!.split(',').indexOf('unique_subjects')]).toBe('3');
    // The event log keeps keys: it is only ever counted.
    expect(
      h.store.db
        .prepare('SELECT DISTINCT subject_id FROM lease_events WHERE entitlement_id = ? ORDER BY 1')
        .pluck()
        .all(e),
    ).toEqual(['alice', 'bob', NFC_JOSE]);
  });
});

describe('ids that would be look-alike subjects are refused', () => {
  it.each([
    ['a variation selector', 'alice\ufe0f'],
    ['a Hangul filler', '\u3164'],
    ['a lone surrogate', 'alice\ud800'],
    ['an unassigned code point', 'alice\u{e0fff}'],
    ['a zero-width space', 'ali\u200bce'],
  ])(
    'refuses %s on lease, seats and status with invalid_request and changes nothing',
    async (_what, id) => {
      const e = await entitlement({ type: 'per_user', max_seats: 5 });
      const before = h.snapshot();
      const l = await lease(id);
      expect(l.status).toBe(400);
      expect(l.body.error).toMatchObject({
        code: 'invalid_request',
        details: {
          issues: expect.arrayContaining([expect.objectContaining({ path: 'subject_id' })]),
        },
      });
      expect(
        (await h.req('POST', `/v1/entitlements/${e}/seats`, { principal_id: id })).body.error.code,
      ).toBe('invalid_request');
      expect(
        (await h.req('POST', `/v1/entitlements/${e}/seats/bulk`, { principal_ids: ['bob', id] }))
          .body.error.code,
      ).toBe('invalid_request');
      // A lone surrogate has no UTF-8 form, so it cannot travel in a query string at all.
      if (!/[\ud800-\udfff]/.test(id))
        expect(
          (
            await h.req(
              'GET',
              `/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=${encodeURIComponent(id)}`,
            )
          ).status,
        ).toBe(400);
      expect(h.snapshot()).toEqual(before);
    },
  );
});

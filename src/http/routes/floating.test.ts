/**
 * Floating extras (README "Floating extras"): overdraft, borrowing and shared instances, through
 * the real app and a real database; each assertion checks the answer, the token and the rows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyLeaseToken } from '../../../clients/typescript/src/index.ts';
import { verifyExport } from '../../sync/vendor.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';

let h: Harness;
beforeEach(() => void (h = createHarness()));
afterEach(() => h.close());

const HOUR = 3_600_000;
const subject = (id: string, extra: Record<string, unknown> = {}) => ({
  product_id: 'your-product-id',
  tenant_id: 'customer-tenant-id',
  subject_type: 'user',
  subject_id: id,
  ...extra,
});
const lease = (body: Record<string, unknown>) => h.req('POST', '/v1/license/lease', body, null);
const renew = (body: Record<string, unknown>) =>
  h.req('POST', '/v1/license/lease/renew', body, null);
const release = (body: Record<string, unknown>) =>
  h.req('POST', '/v1/license/lease/release', body, null);
async function entitlement(policy_json: Record<string, unknown>): Promise<string> {
  const created = await h.req('POST', '/v1/entitlements', { ...seedEntitlement, policy_json });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body.entitlement_id;
}
/** A v4.public token's claims, unverified: the message before the 64-byte signature. */
const rawClaims = (token: string) =>
  JSON.parse(
    Buffer.from(token.split('.')[2]!, 'base64url').subarray(0, -64).toString('utf8'),
  ) as Record<string, unknown>;
const keys = async () => (await h.req('GET', '/v1/license/keys', undefined, null)).body;
const row = (id: string) =>
  h.store.db.prepare('SELECT * FROM leases WHERE id = ?').get(id) as Record<string, unknown>;
const activeRows = (ent: string) =>
  (
    h.store.db
      .prepare("SELECT count(*) AS n FROM leases WHERE entitlement_id = ? AND state = 'active'")
      .get(ent) as { n: number }
  ).n;
const grantFlags = () =>
  h.store.db
    .prepare("SELECT lease_id, flags FROM lease_events WHERE kind = 'grant' ORDER BY seq")
    .all() as { lease_id: string; flags: number | null }[];

describe('overdraft', () => {
  it('grants past max_seats up to overdraft_seats, marked in the answer, token, rows and usage', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 2, overdraft_seats: 1 });
    const a = await lease(subject('a'));
    const b = await lease(subject('b'));
    expect(a.status).toBe(201);
    // A plain grant keeps today's shape: no overdraft field, no claim.
    expect(Object.keys(b.body).sort()).toEqual(['expires_at', 'features', 'lease_id', 'token']);
    expect(Object.keys(rawClaims(b.body.token)).sort()).toEqual(
      ['aud', 'entitlement_id', 'exp', 'features', 'iat', 'iss', 'jti', 'nbf', 'policy', 'sub']
        .concat(['tenant_id', 'typ'])
        .sort(),
    );

    // Full to max_seats, the overdraft seat is still there to be had.
    const before = await h.req('GET', `/v1/entitlements/${ent}/check`);
    expect(before.body).toMatchObject({ can_lease: true, remaining_seats: 1 });
    const c = await lease(subject('c'));
    expect(c.status).toBe(201);
    expect(c.body.overdraft).toBe(true);
    const claims = verifyLeaseToken(c.body.token, await keys(), { now: h.clock.now() });
    expect(claims.overdraft).toBe(true);
    expect(claims.borrowed).toBe(false);
    expect(row(c.body.lease_id)).toMatchObject({ overdraft: 1, borrowed: 0 });
    expect(grantFlags().map((g) => g.flags)).toEqual([null, null, 1]);

    const check = await h.req('GET', `/v1/entitlements/${ent}/check`);
    expect(check.body).toMatchObject({ can_lease: false, remaining_seats: 0 });
    const d = await lease(subject('d'));
    expect(d.status).toBe(409);
    expect(d.body.error).toMatchObject({
      code: 'seats_exhausted',
      message: `all 2 seats of ${ent} and its 1 overdraft seat are in use`,
      details: { entitlement_id: ent, max_seats: 2, overdraft_seats: 1 },
    });
    expect(activeRows(ent)).toBe(3);
    // The status answer says why 3 are used of 2: the policy's overdraft seat.
    const status = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=c&tenant_id=customer-tenant-id',
    );
    expect(status.body.usage).toEqual({
      concurrent_seats_used: 3,
      max_seats: 2,
      overdraft_seats: 1,
    });

    // The overdraft lease stays marked when it renews (it was granted past the limit).
    const r = await renew({ lease_id: c.body.lease_id });
    expect(r.body.overdraft).toBe(true);

    const u = await h.req('GET', `/v1/entitlements/${ent}/usage`);
    expect(u.body.activity).toMatchObject({ grants_30d: 3, overdraft_grants_30d: 1 });
    expect(u.body.leases).toMatchObject({ active: 3, peak_30d: 3 });
    const csv = await h.req('GET', `/v1/entitlements/${ent}/usage.csv?days=1`);
    expect(csv.text.split('\r\n')[1]).toMatch(/,3,1,0,1,3,3,1,0$/);
    const list = await h.req('GET', `/v1/leases?entitlement_id=${ent}`);
    expect(list.body.data.filter((l: { overdraft?: true }) => l.overdraft)).toHaveLength(1);
  });

  it('carries overdraft grants and borrows to the vendor in the usage export (the true-up)', async () => {
    const ent = await entitlement({
      type: 'concurrent',
      max_seats: 1,
      overdraft_seats: 2,
      max_borrow_hours: 8,
    });
    await lease(subject('a'));
    await lease(subject('b'));
    await lease(subject('c', { borrow_hours: 8 }));
    const out = join(h.dir, 'outbox');
    const r = h.services.sync.exportTo({ outDir: out, actor: 'test' });
    const summary = await verifyExport(r.file, h.info.public_key);
    expect(summary.usage).toMatchObject({ grants: 3, overdraft_grants: 2 });
    const text = readFileSync(r.file, 'utf8');
    const usage = text
      .slice(text.indexOf('\n', 9) + 1)
      .split('\n')
      .filter((l) => l.includes('"op":"usage"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(usage).toEqual([
      expect.objectContaining({ entitlement_id: ent, grants: 3, overdraft_grants: 2, borrows: 1 }),
    ]);
  });

  it('marks a named seat taken past max_seats, and every lease of its holder', async () => {
    const ent = await entitlement({ type: 'per_user', max_seats: 1, overdraft_seats: 1 });
    expect((await lease(subject('a'))).body.overdraft).toBeUndefined();
    const b = await lease(subject('b'));
    expect(b.body.overdraft).toBe(true);
    expect(
      h.store.db.prepare('SELECT subject_key, overdraft FROM seats ORDER BY subject_key').all(),
    ).toEqual([
      { subject_key: 'a', overdraft: 0 },
      { subject_key: 'b', overdraft: 1 },
    ]);
    expect((await lease(subject('c'))).body.error.code).toBe('seats_exhausted');
    await release({ lease_id: b.body.lease_id });
    // The seat stays b's, and stays an overdraft seat: its next lease is one too.
    const again = await lease(subject('b'));
    expect(again.body.overdraft).toBe(true);
    expect(h.store.leases.counters(ent).seatsAssigned).toBe(2);
  });

  it('never grants more than max_seats + overdraft_seats under a burst', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 5, overdraft_seats: 2 });
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => lease(subject(`u${i}`))));
    const won = all.filter((r) => r.status === 201);
    expect(won).toHaveLength(7);
    expect(won.filter((r) => r.body.overdraft === true)).toHaveLength(2);
    expect(all.filter((r) => r.status === 409)).toHaveLength(33);
    expect(activeRows(ent)).toBe(7);
    expect(h.store.leases.counters(ent).activeLeases).toBe(7);
  });

  it('refuses overdraft_seats where there is no seat limit', async () => {
    const r = await h.req('POST', '/v1/entitlements', {
      ...seedEntitlement,
      policy_json: { type: 'feature_based', overdraft_seats: 2 },
    });
    expect(r.status).toBe(400);
    expect(r.body.error.details.issues).toContainEqual(
      expect.objectContaining({ path: 'policy_json.overdraft_seats' }),
    );
  });
});

/** 3 seats, borrowable for up to 24 h, at most 1 borrowed at a time. */
const oneBorrowable = (type: 'concurrent' | 'per_user') =>
  entitlement({ type, max_seats: 3, max_borrow_hours: 24, max_borrowed_seats: 1 });

describe('borrowing', () => {
  it('is off by default: borrow_hours is refused and no lease is taken', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 2 });
    const r = await lease(subject('a', { borrow_hours: 1 }));
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({
      code: 'invalid_request',
      message: `${ent} allows no borrowing (policy max_borrow_hours is 0)`,
    });
    expect(activeRows(ent)).toBe(0);
  });

  it('a borrow lasts borrow_hours, in the answer, the token, the rows, status and usage', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 2, max_borrow_hours: 72 });
    const over = await lease(subject('a', { borrow_hours: 73 }));
    expect(over.status).toBe(400);
    expect(over.body.error.message).toBe(`${ent} allows borrowing for at most 72 hours, not 73`);

    const b = await lease(subject('a', { borrow_hours: 72 }));
    expect(b.status).toBe(201);
    expect(b.body).toMatchObject({ borrowed: true, expires_at: '2024-01-18T10:30:00Z' });
    const claims = verifyLeaseToken(b.body.token, await keys(), { now: h.clock.now() });
    expect(claims.borrowed).toBe(true);
    expect(claims.exp.toISOString()).toBe('2024-01-18T10:30:00.000Z');
    expect(row(b.body.lease_id)).toMatchObject({ borrowed: 1, overdraft: 0 });
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(1);
    expect(grantFlags().map((g) => g.flags)).toEqual([2]);

    // A renewal or a plain request again never shortens the borrow.
    const r = await renew({ lease_id: b.body.lease_id });
    expect(r.body).toMatchObject({ borrowed: true, expires_at: '2024-01-18T10:30:00Z' });
    const again = await lease(subject('a'));
    expect(again.body).toMatchObject({
      lease_id: b.body.lease_id,
      expires_at: '2024-01-18T10:30:00Z',
    });

    const s = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=a',
    );
    expect(s.body.current_lease).toEqual({
      lease_id: b.body.lease_id,
      expires_at: '2024-01-18T10:30:00Z',
      borrowed: true,
    });
    const u = await h.req('GET', `/v1/entitlements/${ent}/usage`);
    expect(u.body.leases).toMatchObject({ active: 1, borrowed: 1 });
    expect(u.body.activity).toMatchObject({ borrows_30d: 1 });

    // Early return: the seat and the borrow count come back.
    const rel = await release({ lease_id: b.body.lease_id });
    expect(rel.body.state).toBe('released');
    expect(h.store.leases.counters(ent).activeLeases).toBe(0);
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(0);
  });

  it('a lease in force becomes a borrow when asked again with borrow_hours', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 2, max_borrow_hours: 24 });
    const plain = await lease(subject('a'));
    const b = await lease(subject('a', { borrow_hours: 24 }));
    expect(b.body).toMatchObject({ lease_id: plain.body.lease_id, borrowed: true });
    expect(b.body.expires_at).toBe('2024-01-16T10:30:00Z');
    expect(h.store.leases.counters(ent).activeLeases).toBe(1);
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(1);
    expect(
      h.store.db.prepare("SELECT kind, flags FROM lease_events WHERE kind <> 'deny'").all(),
    ).toEqual([
      { kind: 'grant', flags: null },
      { kind: 'renew', flags: 2 },
    ]);
  });

  it('caps borrowed seats at max_borrowed_seats; an expired borrow frees its share', async () => {
    const ent = await oneBorrowable('concurrent');
    const a = await lease(subject('a', { borrow_hours: 2 }));
    expect(a.status).toBe(201);
    const b = await lease(subject('b', { borrow_hours: 2 }));
    expect(b.status).toBe(409);
    expect(b.body.error).toMatchObject({
      code: 'seats_exhausted',
      details: { reason: 'borrow_limit', max_borrowed_seats: 1 },
    });
    expect((await lease(subject('b'))).status).toBe(201);
    h.clock.advance(2 * HOUR);
    expect(h.services.leases.sweep()).toBe(2);
    expect(h.store.leases.counters(ent).activeLeases).toBe(0);
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(0);
    expect((await lease(subject('c', { borrow_hours: 2 }))).status).toBe(201);
  });

  it('a seat revoke ending a borrowed lease gives its borrow back (per_user)', async () => {
    const ent = await oneBorrowable('per_user');
    const a = await lease(subject('a', { borrow_hours: 2 }));
    expect(a.status).toBe(201);
    const seat = h.store.seats.find(ent, 'user', 'a')!;
    const gone = await h.req('DELETE', `/v1/entitlements/${ent}/seats/${seat.id}`);
    expect(gone.status, JSON.stringify(gone.body)).toBe(200);
    expect(gone.body.ended_lease_id).toBe(a.body.lease_id);
    expect(row(a.body.lease_id)).toMatchObject({ state: 'revoked', borrowed: 1 });
    expect(h.store.leases.counters(ent).activeLeases).toBe(0);
    expect(
      h.store.db
        .prepare(
          "SELECT reason, active_after FROM lease_events WHERE kind = 'revoke' AND lease_id = ?",
        )
        .get(a.body.lease_id),
    ).toEqual({ reason: 'seat_revoked', active_after: 0 });
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(0);
    const b = await lease(subject('b', { borrow_hours: 2 }));
    expect(b.status, JSON.stringify(b.body)).toBe(201);
    expect(b.body.borrowed).toBe(true);
    expect(row(b.body.lease_id)).toMatchObject({ state: 'active', borrowed: 1 });
  });

  it('an expired borrow no longer counts against max_borrowed_seats, before any sweep', async () => {
    const ent = await oneBorrowable('concurrent');
    const a = await lease(subject('a', { borrow_hours: 2 }));
    expect(a.status).toBe(201);
    h.clock.advance(2 * HOUR);
    const b = await lease(subject('b', { borrow_hours: 2 }));
    expect(b.status, JSON.stringify(b.body)).toBe(201);
    expect(b.body.borrowed).toBe(true);
    // No sweep ran: a's row is still 'active' (its time passed), b's is the one borrow in force.
    expect(row(a.body.lease_id)).toMatchObject({ state: 'active', borrowed: 1 });
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(1);
  });

  it('borrowed and floating leases together never exceed the seats', async () => {
    const ent = await entitlement({
      type: 'concurrent',
      max_seats: 4,
      max_borrow_hours: 24,
      max_borrowed_seats: 2,
    });
    const all = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        lease(subject(`u${i}`, i % 2 === 0 ? { borrow_hours: 8 } : {})),
      ),
    );
    const won = all.filter((r) => r.status === 201);
    expect(won).toHaveLength(4);
    expect(won.filter((r) => r.body.borrowed).length).toBeLessThanOrEqual(2);
    expect(activeRows(ent)).toBe(4);
    expect(h.store.leases.counters(ent).activeLeases).toBe(4);
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(
      won.filter((r) => r.body.borrowed).length,
    );
  });

  it('field scenario: a laptop borrows for 3 days, the server is gone, the token still verifies offline', async () => {
    await entitlement({ type: 'concurrent', max_seats: 1, max_borrow_hours: 72 });
    const published = await keys();
    const b = await lease(subject('laptop', { borrow_hours: 72 }));
    const token = b.body.token as string;
    const issuedAt = h.clock.now();
    h.close();
    // The server is unreachable from here on: only the token and the published keys remain.
    h = createHarness();
    for (const hours of [1, 24, 71.9]) {
      const claims = verifyLeaseToken(token, published, {
        now: issuedAt + hours * HOUR,
        productId: 'your-product-id',
      });
      expect(claims).toMatchObject({ borrowed: true, sub: 'user:laptop' });
    }
    expect(() => verifyLeaseToken(token, published, { now: issuedAt + 72.1 * HOUR })).toThrow(
      /expired/,
    );
  });
});

describe('shared instances', () => {
  const instances = (leaseId: string) =>
    h.store.db
      .prepare('SELECT instance_id FROM lease_instances WHERE lease_id = ? ORDER BY instance_id')
      .all(leaseId)
      .map((r) => (r as { instance_id: string }).instance_id);

  it('field scenario: one user on two workstations; the first exits, the second keeps working and nobody else takes the seat', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 1 });
    const ws1 = await lease(subject('alice', { instance_id: 'ws1' }));
    const ws2 = await lease(subject('alice', { instance_id: 'ws2' }));
    expect(ws1.status).toBe(201);
    expect(ws2.body.lease_id).toBe(ws1.body.lease_id);
    expect(instances(ws1.body.lease_id)).toEqual(['ws1', 'ws2']);
    expect(h.store.leases.counters(ent).activeLeases).toBe(1);

    const gone = await release({ lease_id: ws1.body.lease_id, instance_id: 'ws1' });
    expect(gone.status).toBe(200);
    expect(gone.body).toEqual({
      lease_id: ws1.body.lease_id,
      state: 'active',
      released_at: null,
      instances: 1,
    });
    expect(row(ws1.body.lease_id)).toMatchObject({ state: 'active' });
    expect(instances(ws1.body.lease_id)).toEqual(['ws2']);

    const bob = await lease(subject('bob'));
    expect(bob.status).toBe(409);
    expect(bob.body.error.code).toBe('seats_exhausted');
    h.clock.advance(HOUR / 2);
    const kept = await renew({ lease_id: ws2.body.lease_id, instance_id: 'ws2' });
    expect(kept.status).toBe(200);
    expect(kept.body.expires_at).toBe('2024-01-15T12:00:00Z');

    const last = await release({ lease_id: ws2.body.lease_id, instance_id: 'ws2' });
    expect(last.body).toMatchObject({ state: 'released', instances: 0 });
    expect(instances(ws1.body.lease_id)).toEqual([]);
    expect(h.store.leases.counters(ent).activeLeases).toBe(0);
    expect((await lease(subject('bob'))).status).toBe(201);
  });

  it('asking or releasing again is idempotent: one lease, one borrow, one instance row', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 2, max_borrow_hours: 4 });
    const first = await lease(subject('alice', { instance_id: 'a', borrow_hours: 4 }));
    const again = await lease(subject('alice', { instance_id: 'a', borrow_hours: 4 }));
    expect(again.body).toMatchObject({ lease_id: first.body.lease_id, borrowed: true });
    await lease(subject('alice', { instance_id: 'b' }));
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(1);
    expect(instances(first.body.lease_id)).toEqual(['a', 'b']);
    const once = await release({ lease_id: first.body.lease_id, instance_id: 'a' });
    const twice = await release({ lease_id: first.body.lease_id, instance_id: 'a' });
    expect(twice.body).toEqual(once.body);
    expect(twice.body).toMatchObject({ state: 'active', instances: 1 });
    const end = await release({ lease_id: first.body.lease_id, instance_id: 'b' });
    const after = await release({ lease_id: first.body.lease_id, instance_id: 'b' });
    expect(end.body.state).toBe('released');
    expect(after.body).toMatchObject({ state: 'released', released_at: end.body.released_at });
    expect(h.store.leases.counters(ent).activeLeases).toBe(0);
    expect(h.store.leases.liveBorrowedCount(ent, h.clock.now())).toBe(0);
  });

  it('caps instances per subject; an instance that stopped renewing no longer counts', async () => {
    const ent = await entitlement({
      type: 'concurrent',
      max_seats: 2,
      max_instances_per_subject: 2,
    });
    const a = await lease(subject('alice', { instance_id: 'a' }));
    await lease(subject('alice', { instance_id: 'b' }));
    const c = await lease(subject('alice', { instance_id: 'c' }));
    expect(c.status).toBe(409);
    expect(c.body.error).toMatchObject({
      code: 'seats_exhausted',
      details: { reason: 'instance_limit', max_instances_per_subject: 2, entitlement_id: ent },
    });
    expect(instances(a.body.lease_id)).toEqual(['a', 'b']);
    // An instance already on the lease renews at the cap.
    expect((await lease(subject('alice', { instance_id: 'a' }))).status).toBe(201);

    // b stops renewing; a keeps on: the lease lives on, and b's place frees once b's time is up.
    h.clock.advance(40 * 60_000);
    expect((await renew({ lease_id: a.body.lease_id, instance_id: 'a' })).status).toBe(200);
    h.clock.advance(30 * 60_000);
    expect(row(a.body.lease_id)).toMatchObject({ state: 'active' });
    const c2 = await lease(subject('alice', { instance_id: 'c' }));
    expect(c2.status).toBe(201);
    expect(c2.body.lease_id).toBe(a.body.lease_id);
    h.services.leases.sweep();
    expect(instances(a.body.lease_id)).toEqual(['a', 'c']);
  });

  it('the lease ends when its last instance stops renewing, and frees the seat', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 1 });
    await lease(subject('alice', { instance_id: 'a' }));
    h.clock.advance(HOUR / 2);
    await lease(subject('alice', { instance_id: 'b' }));
    h.clock.advance(HOUR);
    expect((await lease(subject('alice', { instance_id: 'a' }))).status).toBe(201);
    h.clock.advance(HOUR);
    const bob = await lease(subject('bob'));
    expect(bob.status).toBe(201);
    expect(h.store.leases.counters(ent).activeLeases).toBe(1);
  });

  it('under concurrent release, renew and join of instances, the subject keeps exactly one seat', async () => {
    const ent = await entitlement({ type: 'concurrent', max_seats: 1 });
    const first = await lease(subject('alice', { instance_id: 'i0' }));
    let leaseId = first.body.lease_id as string;
    for (let round = 1; round <= 15; round++) {
      const calls = [
        () => lease(subject('alice', { instance_id: `i${round}` })),
        () => lease(subject('alice', { instance_id: `j${round}` })),
        () => release({ lease_id: leaseId, instance_id: `i${round - 1}` }),
        () => renew({ lease_id: leaseId, instance_id: `j${round - 1}` }),
        () => lease(subject(`intruder${round}`)),
      ];
      // A different arrival order each round (rotated), all in flight at once.
      const order = calls.map((_, k) => (k + round) % calls.length);
      const settled = await Promise.all(order.map((k) => calls[k]!()));
      const answers = calls.map((_, k) => settled[order.indexOf(k)]!);
      // Someone always held on: nobody else got the seat.
      expect(answers.at(-1)!.status).toBe(409);
      const live = h.store.db
        .prepare("SELECT id FROM leases WHERE entitlement_id = ? AND state = 'active'")
        .all(ent) as { id: string }[];
      expect(live).toHaveLength(1);
      expect(h.store.leases.counters(ent).activeLeases).toBe(1);
      leaseId = live[0]!.id;
      expect(answers[0]!.body.lease_id).toBe(leaseId);
    }
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { verifyLeaseToken } from '../../../clients/typescript/src/index.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const HOUR = 3_600_000;
const subject = (id: string, type = 'user') => ({
  product_id: 'your-product-id',
  tenant_id: 'customer-tenant-id',
  subject_type: type,
  subject_id: id,
});
const lease = (body: Record<string, unknown>) => h.req('POST', '/v1/license/lease', body, null);
const renew = (id: string) => h.req('POST', '/v1/license/lease/renew', { lease_id: id }, null);
const release = (id: string) => h.req('POST', '/v1/license/lease/release', { lease_id: id }, null);
async function entitlement(
  policy: Record<string, unknown> = seedEntitlement.policy_json,
  extra: Record<string, unknown> = {},
) {
  const r = await h.req('POST', '/v1/entitlements', {
    ...seedEntitlement,
    policy_json: policy,
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.entitlement_id as string;
}
const keys = async () => (await h.req('GET', '/v1/license/keys', undefined, null)).body;
const activeLeases = (id: string) =>
  (
    h.store.db
      .prepare("SELECT count(*) AS n FROM leases WHERE entitlement_id = ? AND state = 'active'")
      .get(id) as { n: number }
  ).n;
const events = (kind: string) =>
  (
    h.store.db.prepare('SELECT count(*) AS n FROM lease_events WHERE kind = ?').get(kind) as {
      n: number;
    }
  ).n;

describe('the seed tutorial, steps 3 to 6', () => {
  it('leases, renews, shows status and releases with the tutorial fields', async () => {
    const entId = await entitlement();
    const l = await lease(subject('user_123'));
    expect(l.status).toBe(201);
    expect(Object.keys(l.body).sort()).toEqual(['expires_at', 'features', 'lease_id', 'token']);
    expect(l.body).toMatchObject({
      expires_at: '2024-01-15T11:30:00Z',
      features: ['feature-a', 'feature-b'],
    });
    expect(l.body.lease_id).toMatch(/^lease_[A-Za-z0-9_-]{30}$/);
    expect(l.body.token).toMatch(/^v4\.public\./);

    const claims = verifyLeaseToken(l.body.token, await keys(), {
      now: h.clock.now(),
      productId: 'your-product-id',
    });
    expect(claims).toMatchObject({
      typ: 'bp.lease/1',
      iss: h.info.server_id,
      sub: 'user:user_123',
      aud: 'your-product-id',
      jti: l.body.lease_id,
      tenantId: 'customer-tenant-id',
      entitlementId: entId,
      policy: 'concurrent',
      features: ['feature-a', 'feature-b'],
      grace: false,
    });

    h.clock.set('2024-01-15T11:30:00Z');
    h.clock.advance(-60_000);
    const r = await renew(l.body.lease_id);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      lease_id: l.body.lease_id,
      expires_at: '2024-01-15T12:29:00Z',
      features: ['feature-a', 'feature-b'],
    });

    const s = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123',
    );
    expect(s.status).toBe(200);
    expect(s.body).toEqual({
      entitlement_id: entId,
      tenant_id: 'customer-tenant-id',
      status: 'active',
      current_lease: { lease_id: l.body.lease_id, expires_at: '2024-01-15T12:29:00Z' },
      features: ['feature-a', 'feature-b'],
      usage: { concurrent_seats_used: 1, max_seats: 10 },
    });

    const rel = await release(l.body.lease_id);
    expect(rel.status).toBe(200);
    expect(rel.body).toMatchObject({ lease_id: l.body.lease_id, state: 'released' });
    expect(activeLeases(entId)).toBe(0);
    expect(h.store.leases.counters(entId).activeLeases).toBe(0);
    const after = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123',
    );
    expect(after.body).toMatchObject({ current_lease: null, usage: { concurrent_seats_used: 0 } });
  });
});

describe('status', () => {
  it('finds the subject by its last lease across tenants, and asks for tenant_id when nothing ties it', async () => {
    await entitlement();
    const other = await entitlement(seedEntitlement.policy_json, { tenant_id: 'other-tenant' });
    const l = await lease({ ...subject('u9'), tenant_id: 'other-tenant' });
    await release(l.body.lease_id);
    const s = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=u9',
    );
    expect(s.body).toMatchObject({
      entitlement_id: other,
      tenant_id: 'other-tenant',
      current_lease: null,
    });
    const none = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=stranger',
    );
    expect(none.status).toBe(400);
    expect(none.body.error.message).toBe(
      'several tenants have entitlements for your-product-id; pass tenant_id',
    );
    const scoped = await h.req(
      'GET',
      '/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=stranger&tenant_id=other-tenant',
    );
    expect(scoped.body.entitlement_id).toBe(other);
  });
});

describe('granting', () => {
  it('gives the same subject its lease back, refreshed, not a second seat', async () => {
    const entId = await entitlement({ type: 'concurrent', max_seats: 1 });
    const a = await lease(subject('u1'));
    h.clock.advance(10 * 60_000);
    const b = await lease(subject('u1'));
    expect(b.status).toBe(201);
    expect(b.body.lease_id).toBe(a.body.lease_id);
    expect(b.body.expires_at).toBe('2024-01-15T11:40:00Z');
    expect(activeLeases(entId)).toBe(1);
    expect(h.store.leases.counters(entId).activeLeases).toBe(1);
  });

  it('grants requested features that are a subset, and refuses others with feature_not_entitled', async () => {
    const entId = await entitlement();
    const ok = await lease({ ...subject('u1'), features: ['feature-b'] });
    expect(ok.body.features).toEqual(['feature-b']);
    const bad = await lease({ ...subject('u2'), features: ['feature-a', 'feature-z'] });
    expect(bad.status).toBe(403);
    expect(bad.body.error).toMatchObject({
      code: 'feature_not_entitled',
      message: `${entId} does not include feature-z`,
      details: { features: ['feature-z'] },
    });
    expect(activeLeases(entId)).toBe(1);
    expect(events('deny')).toBe(1);
  });

  it('answers not_found when the tenant has no entitlement for the product', async () => {
    await entitlement();
    const r = await lease({ ...subject('u1'), tenant_id: 'someone-else' });
    expect(r.status).toBe(404);
    expect(r.body.error.message).toBe(
      'no entitlement for tenant someone-else and product your-product-id',
    );
    // Where an admin sees what the tenant holds (a mistyped tenant or product id is the usual cause).
    expect(r.body.error.details).toEqual({
      tenant_id: 'someone-else',
      product_id: 'your-product-id',
      hint: "the tenant's entitlements: GET /v1/entitlements?tenant_id=someone-else",
    });
    expect(h.store.db.prepare('SELECT count(*) AS n FROM leases').get()).toEqual({ n: 0 });
  });

  it('sets expiry from the policy TTL, never past the end of term plus grace', async () => {
    await entitlement({ type: 'concurrent', max_seats: 5, lease_ttl_seconds: 600, grace_days: 0 });
    expect((await lease(subject('u1'))).body.expires_at).toBe('2024-01-15T10:40:00Z');
    h.clock.set('2024-12-31T23:55:00Z');
    expect((await lease(subject('u2'))).body.expires_at).toBe('2024-12-31T23:59:59Z');
  });

  it('chooses deterministically: explicit id, then the one ending first', async () => {
    const late = await entitlement(seedEntitlement.policy_json, {
      ends_at: '2026-01-01T00:00:00Z',
    });
    const early = await entitlement(seedEntitlement.policy_json, {
      ends_at: '2025-01-01T00:00:00Z',
    });
    const a = await lease(subject('u1'));
    expect(verifyLeaseToken(a.body.token, await keys(), { now: h.clock.now() }).entitlementId).toBe(
      early,
    );
    const b = await lease({ ...subject('u2'), entitlement_id: late });
    expect(verifyLeaseToken(b.body.token, await keys(), { now: h.clock.now() }).entitlementId).toBe(
      late,
    );
    const c = await lease({ ...subject('u3'), entitlement_id: 'ent_elsewhere' });
    expect(c.status).toBe(404);
  });

  it('moves on to the next entitlement when the first is full, and keeps a subject on the one it holds', async () => {
    const first = await entitlement(
      { type: 'concurrent', max_seats: 1 },
      { ends_at: '2024-06-01T00:00:00Z' },
    );
    const second = await entitlement(
      { type: 'concurrent', max_seats: 1 },
      { ends_at: '2024-09-01T00:00:00Z' },
    );
    const a = await lease(subject('u1'));
    const b = await lease(subject('u2'));
    const ent = async (token: string) =>
      verifyLeaseToken(token, await keys(), { now: h.clock.now() }).entitlementId;
    expect(await ent(a.body.token)).toBe(first);
    expect(await ent(b.body.token)).toBe(second);
    expect((await lease(subject('u2'))).body.lease_id).toBe(b.body.lease_id);
    const c = await lease(subject('u3'));
    expect(c.status).toBe(409);
    expect(c.body.error.code).toBe('seats_exhausted');
  });

  it('frees the seat of an expired lease at once, without a sweep; expired leases elsewhere neither block it nor count as in force', async () => {
    const busy = await entitlement(
      { type: 'concurrent', max_seats: 500, lease_ttl_seconds: 60 },
      { tenant_id: 'busy-tenant' },
    );
    for (let i = 0; i < 300; i++)
      expect((await lease({ ...subject(`b${i}`), tenant_id: 'busy-tenant' })).status).toBe(201);
    const entId = await entitlement({ type: 'concurrent', max_seats: 1, lease_ttl_seconds: 60 });
    const a = await lease(subject('u1'));
    expect((await lease(subject('u2'))).body.error.code).toBe('seats_exhausted');
    // All 301 leases expire; no sweep runs.
    h.clock.advance(61_000);
    const b = await lease(subject('u2'));
    expect(b.status).toBe(201);
    expect(h.store.leases.get(a.body.lease_id)?.state).toBe('expired');
    expect(h.store.leases.counters(entId).activeLeases).toBe(1);
    expect((await renew(a.body.lease_id)).body.error.code).toBe('lease_expired');
    // The busy tenant's leases are still unmarked: its counter says 300, none is in force.
    expect(h.store.leases.counters(busy).activeLeases).toBe(300);
    expect((await h.req('GET', `/v1/entitlements/${busy}`)).body.usage.active_leases).toBe(0);
    expect((await h.req('GET', `/v1/entitlements/${entId}`)).body.usage.active_leases).toBe(1);
    expect(h.services.leases.sweep()).toBe(300);
    expect(h.store.leases.counters(busy).activeLeases).toBe(0);
  });

  it('refuses a per_user entitlement to a machine subject', async () => {
    await entitlement({ type: 'per_user', max_seats: 2 });
    const r = await lease(subject('m1', 'machine'));
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('leases to subject_type "user"');
  });
});

describe('renew and release', () => {
  it('refuses renewal after release with lease_released, and release is idempotent', async () => {
    await entitlement();
    const l = await lease(subject('u1'));
    expect((await release(l.body.lease_id)).status).toBe(200);
    const again = await release(l.body.lease_id);
    expect(again.status).toBe(200);
    expect(again.body.state).toBe('released');
    expect(events('release')).toBe(1);
    const r = await renew(l.body.lease_id);
    expect(r.status).toBe(410);
    expect(r.body.error).toMatchObject({
      code: 'lease_released',
      message: `lease ${l.body.lease_id} was released; request a new lease`,
    });
  });

  it('refuses renewal after expiry with lease_expired', async () => {
    await entitlement();
    const l = await lease(subject('u1'));
    h.clock.advance(HOUR);
    const r = await renew(l.body.lease_id);
    expect(r.status).toBe(410);
    expect(r.body.error.code).toBe('lease_expired');
  });

  it('answers not_found for an unknown lease id and invalid_request for a malformed one', async () => {
    expect((await renew('lease_AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(404);
    expect((await release('lease_AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(404);
    const bad = await renew('nope');
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.issues[0].path).toBe('lease_id');
  });

  it('drops features the entitlement no longer grants at renewal', async () => {
    const entId = await entitlement();
    const l = await lease(subject('u1'));
    await h.req('PUT', `/v1/entitlements/${entId}`, {
      policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a'] },
    });
    expect((await renew(l.body.lease_id)).body.features).toEqual(['feature-a']);
  });
});

describe('lifecycle on the lease path', () => {
  it('refuses new leases and renewals on a suspended entitlement, and allows them again on resume', async () => {
    const entId = await entitlement();
    const l = await lease(subject('u1'));
    await h.req('POST', `/v1/entitlements/${entId}/suspend`);
    const r = await renew(l.body.lease_id);
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'suspended' },
    });
    expect((await lease(subject('u2'))).body.error.details.reason).toBe('suspended');
    await h.req('POST', `/v1/entitlements/${entId}/resume`);
    expect((await renew(l.body.lease_id)).status).toBe(200);
  });

  it('refuses before the start with reason pending', async () => {
    await entitlement(seedEntitlement.policy_json, { starts_at: '2024-02-01T00:00:00Z' });
    const r = await lease(subject('u1'));
    expect(r.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'pending' },
    });
  });

  it('lets holders renew in grace with grace: true, refuses newcomers, then refuses all', async () => {
    await entitlement({
      type: 'concurrent',
      max_seats: 5,
      grace_days: 30,
      lease_ttl_seconds: 20 * 86_400,
    });
    h.clock.set('2024-12-31T23:30:00Z');
    const l = await lease(subject('holder'));
    expect(l.body.grace).toBeUndefined();
    h.clock.set('2025-01-01T00:15:00Z');
    const g = await renew(l.body.lease_id);
    expect(g.status).toBe(200);
    expect(g.body).toMatchObject({ grace: true, expires_at: '2025-01-21T00:15:00Z' });
    expect(verifyLeaseToken(g.body.token, await keys(), { now: h.clock.now() }).grace).toBe(true);
    const newcomer = await lease(subject('newcomer'));
    expect(newcomer.status).toBe(403);
    expect(newcomer.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'expired' },
    });
    h.clock.set('2025-01-20T00:00:00Z');
    // The last renewal stops at the end of grace, not at now + TTL.
    expect((await renew(l.body.lease_id)).body.expires_at).toBe('2025-01-30T23:59:59Z');
    h.clock.set('2025-01-31T00:00:00Z');
    expect((await renew(l.body.lease_id)).body.error.code).toBe('lease_expired');
    expect((await lease(subject('holder'))).body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'expired' },
    });
  });

  it('drains after max_seats is lowered: running leases renew, nobody new until under the limit', async () => {
    const entId = await entitlement({ type: 'concurrent', max_seats: 3 });
    const ls = [];
    for (const u of ['u1', 'u2', 'u3']) ls.push((await lease(subject(u))).body.lease_id);
    await h.req('PUT', `/v1/entitlements/${entId}`, {
      policy_json: { type: 'concurrent', max_seats: 1 },
    });
    for (const id of ls) expect((await renew(id)).status).toBe(200);
    expect((await lease(subject('u4'))).body.error.code).toBe('seats_exhausted');
    await release(ls[0]);
    expect((await lease(subject('u4'))).body.error.code).toBe('seats_exhausted');
    await release(ls[1]);
    await release(ls[2]);
    expect((await lease(subject('u4'))).status).toBe(201);
    expect((await lease(subject('u5'))).body.error.code).toBe('seats_exhausted');
  });

  it('refuses to change the policy type while leases exist', async () => {
    const entId = await entitlement();
    await lease(subject('u1'));
    const r = await h.req('PUT', `/v1/entitlements/${entId}`, {
      policy_json: { type: 'feature_based' },
    });
    expect(r.status).toBe(409);
    expect(h.store.entitlements.get(entId)?.policy.type).toBe('concurrent');
  });
});

describe('seats under concurrency', () => {
  async function race(policy: Record<string, unknown>, type: string) {
    const entId = await entitlement(policy);
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => lease(subject(`s${i}`, type))),
    );
    const granted = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 409);
    expect(granted).toHaveLength(10);
    expect(refused).toHaveLength(290);
    for (const r of refused) expect(r.body.error.code).toBe('seats_exhausted');
    expect(activeLeases(entId)).toBe(10);
    return { entId, granted };
  }

  it('grants exactly 10 of 300 simultaneous requests for 10 concurrent seats; after one release exactly one of 50 newcomers wins', async () => {
    const { entId, granted } = await race({ type: 'concurrent', max_seats: 10 }, 'user');
    await release(granted[0]!.body.lease_id);
    const next = await Promise.all(Array.from({ length: 50 }, (_, i) => lease(subject(`new${i}`))));
    expect(next.filter((r) => r.status === 201)).toHaveLength(1);
    expect(next.filter((r) => r.status === 409)).toHaveLength(49);
    expect(activeLeases(entId)).toBe(10);
    expect(h.store.leases.counters(entId).activeLeases).toBe(10);
  });

  it('gives 50 simultaneous requests of one subject one lease, not 50 seats', async () => {
    const entId = await entitlement({ type: 'concurrent', max_seats: 10 });
    const results = await Promise.all(Array.from({ length: 50 }, () => lease(subject('same'))));
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect(new Set(results.map((r) => r.body.lease_id)).size).toBe(1);
    expect(activeLeases(entId)).toBe(1);
    expect(h.store.leases.counters(entId).activeLeases).toBe(1);
  });

  it.each([
    ['per_user', 'user'],
    ['per_machine', 'machine'],
  ])(
    'assigns exactly 10 of 300 simultaneous %s requests their seats',
    async (type, subjectType) => {
      const { entId } = await race({ type, max_seats: 10 }, subjectType);
      const seats = h.store.db
        .prepare('SELECT count(*) AS n FROM seats WHERE entitlement_id = ?')
        .get(entId) as { n: number };
      expect(seats.n).toBe(10);
      expect(h.store.leases.counters(entId).seatsAssigned).toBe(10);
    },
  );
});

describe('admin lease routes', () => {
  it('lists leases in force with filters and revokes one, whose renewal is then refused', async () => {
    const entId = await entitlement();
    const a = await lease(subject('u1'));
    await lease(subject('u2'));
    const list = await h.req('GET', `/v1/leases?entitlement_id=${entId}`);
    expect(list.body.data.map((l: any) => l.subject_id)).toEqual(['u1', 'u2']);
    expect(list.body.data[0]).toMatchObject({
      lease_id: a.body.lease_id,
      tenant_id: 'customer-tenant-id',
      product_id: 'your-product-id',
      state: 'active',
    });
    const rev = await h.req('POST', `/v1/leases/${a.body.lease_id}/revoke`);
    expect(rev.status).toBe(200);
    expect(rev.body.state).toBe('revoked');
    expect((await renew(a.body.lease_id)).body.error.code).toBe('lease_released');
    expect((await h.req('POST', `/v1/leases/${a.body.lease_id}/revoke`)).status).toBe(409);
    expect((await h.req('GET', '/v1/leases?subject_id=u1')).body.data).toEqual([]);
    expect(
      h.store.audit
        .page(0, 100)
        .some((r) => r.action === 'lease.revoke' && r.target_id === a.body.lease_id),
    ).toBe(true);
  });

  it('sweeps expired leases into expire events', async () => {
    const entId = await entitlement();
    await lease(subject('u1'));
    await lease(subject('u2'));
    h.clock.advance(HOUR + 1);
    expect(h.services.leases.sweep()).toBe(2);
    expect(h.services.leases.sweep()).toBe(0);
    expect(events('expire')).toBe(2);
    expect(h.store.leases.counters(entId).activeLeases).toBe(0);
  });
});

describe('the vendor default lease lifetime', () => {
  it('applies to policies without lease_ttl_seconds and yields to a policy that sets one', async () => {
    await entitlement({ type: 'concurrent', max_seats: 5 });
    h.store.state.set('default_lease_ttl_seconds', '600');
    expect((await lease(subject('u1'))).body.expires_at).toBe('2024-01-15T10:40:00Z');
    await entitlement(
      { type: 'concurrent', max_seats: 5, lease_ttl_seconds: 120 },
      { tenant_id: 'other', ends_at: '2024-06-01T00:00:00Z' },
    );
    expect((await lease({ ...subject('u2'), tenant_id: 'other' })).body.expires_at).toBe(
      '2024-01-15T10:32:00Z',
    );
  });
});

describe('no stale terms', () => {
  it('sees a change made by another connection at the very next grant', async () => {
    const { createEntitlementService } = await import('../../domain/entitlements.ts');
    const entId = await entitlement({ type: 'concurrent', max_seats: 5 });
    expect((await lease(subject('u1'))).status).toBe(201);
    // Another process's connection (the CLI on SQLite; another server on PostgreSQL).
    const other = h.openOtherStore();
    try {
      createEntitlementService({ store: other, clock: h.clock }).suspend(entId, 'cli:test');
    } finally {
      other.close();
    }
    const r = await lease(subject('u2'));
    expect(r.status).toBe(403);
    expect(r.body.error.details.reason).toBe('suspended');
    await h.req('POST', `/v1/entitlements/${entId}/resume`);
    await h.req('PUT', `/v1/entitlements/${entId}`, {
      policy_json: { type: 'concurrent', max_seats: 1 },
    });
    expect((await lease(subject('u2'))).body.error.code).toBe('seats_exhausted');
  });
});

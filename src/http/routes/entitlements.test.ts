import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

describe('the seed tutorial, step 1: create an entitlement', () => {
  it('answers 201 with the tutorial fields and stores it with its audit row', async () => {
    const before = h.store.audit.head().seq;
    const r = await h.req('POST', '/v1/entitlements', seedEntitlement);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      tenant_id: 'customer-tenant-id',
      product_id: 'your-product-id',
      policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a', 'feature-b'] },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2024-12-31T23:59:59Z',
      created_at: '2024-01-15T10:30:00Z',
      status: 'active',
      source: 'manual',
    });
    expect(r.body.entitlement_id).toMatch(/^ent_[A-Za-z0-9_-]{22}$/);
    const row = h.store.entitlements.get(r.body.entitlement_id);
    expect(row?.tenantId).toBe('customer-tenant-id');
    expect(h.store.audit.head().seq).toBe(before + 1);
    expect(h.store.audit.page(before, 1)[0]).toMatchObject({
      action: 'entitlement.create',
      target_id: r.body.entitlement_id,
    });
    expect(h.services.audit.verify().firstBreak).toBeNull();
  });

  it('accepts the manual provisioning request of the local server section (no features)', async () => {
    const r = await h.req('POST', '/v1/entitlements', {
      tenant_id: 'local-tenant-id',
      product_id: 'your-product-id',
      policy_json: { type: 'concurrent', max_seats: 10 },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2024-12-31T23:59:59Z',
    });
    expect(r.status).toBe(201);
    expect(r.body.policy_json).toEqual({ type: 'concurrent', max_seats: 10 });
  });

  it('stores the marketplace license words in normal form', async () => {
    const cases = [
      [{ type: 'individual' }, { type: 'per_user', max_seats: 1 }],
      [
        { type: 'seat_based', max_seats: 10 },
        { type: 'per_user', max_seats: 10 },
      ],
      [
        { type: 'team', max_seats: 120 },
        { type: 'per_user', max_seats: 120 },
      ],
      [
        { type: 'unlimited', features: ['x'] },
        { type: 'feature_based', features: ['x'] },
      ],
    ] as const;
    for (const [given, stored] of cases) {
      const r = await h.req('POST', '/v1/entitlements', { ...seedEntitlement, policy_json: given });
      expect(r.status, JSON.stringify(given)).toBe(201);
      expect(r.body.policy_json).toEqual(stored);
    }
  });

  it('refuses a second entitlement with the same external_id', async () => {
    expect(
      (await h.req('POST', '/v1/entitlements', { ...seedEntitlement, external_id: 'crm-1' }))
        .status,
    ).toBe(201);
    const r = await h.req('POST', '/v1/entitlements', { ...seedEntitlement, external_id: 'crm-1' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('conflict');
    expect(h.store.entitlements.count()).toBe(1);
  });
});

describe('the seed tutorial, step 2: update the policy', () => {
  it('PUT with only policy_json changes the policy and nothing else', async () => {
    const created = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body;
    h.clock.advance(60_000);
    const r = await h.req('PUT', `/v1/entitlements/${created.entitlement_id}`, {
      policy_json: {
        type: 'concurrent',
        max_seats: 20,
        features: ['feature-a', 'feature-b', 'feature-c'],
      },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      entitlement_id: created.entitlement_id,
      policy_json: {
        type: 'concurrent',
        max_seats: 20,
        features: ['feature-a', 'feature-b', 'feature-c'],
      },
      starts_at: created.starts_at,
      ends_at: created.ends_at,
      created_at: created.created_at,
      updated_at: '2024-01-15T10:31:00Z',
    });
    expect(h.store.entitlements.get(created.entitlement_id)?.policy.max_seats).toBe(20);
    const last = h.store.audit.page(h.store.audit.head().seq - 1, 1)[0]!;
    expect(last.action).toBe('entitlement.update');
    expect(JSON.parse(last.details)).toMatchObject({
      before: { policy_json: { max_seats: 10 } },
      after: { policy_json: { max_seats: 20 } },
    });
  });

  it('PATCH updates the term, and a term that ends before it starts is refused unchanged', async () => {
    const id = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
    const ok = await h.req('PATCH', `/v1/entitlements/${id}`, { ends_at: '2025-06-30T00:00:00Z' });
    expect(ok.status).toBe(200);
    expect(ok.body.ends_at).toBe('2025-06-30T00:00:00Z');
    const bad = await h.req('PATCH', `/v1/entitlements/${id}`, { ends_at: '2023-01-01T00:00:00Z' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect(h.store.entitlements.get(id)?.endsAt).toBe(Date.parse('2025-06-30T00:00:00Z'));
  });

  it('refuses to move an entitlement to another tenant', async () => {
    const id = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
    const r = await h.req('PUT', `/v1/entitlements/${id}`, { tenant_id: 'other' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('tenant_id cannot be changed');
  });

  it('answers not_found for an unknown id', async () => {
    const r = await h.req('PUT', '/v1/entitlements/ent_nope', {
      policy_json: { type: 'concurrent', max_seats: 1 },
    });
    expect(r.status).toBe(404);
    expect(r.body.error).toMatchObject({ code: 'not_found', message: 'no entitlement ent_nope' });
  });
});

describe('listing', () => {
  it('filters by tenant, product and derived status, and pages with a cursor', async () => {
    for (let i = 0; i < 5; i++)
      await h.req('POST', '/v1/entitlements', { ...seedEntitlement, tenant_id: `t${i % 2}` });
    await h.req('POST', '/v1/entitlements', {
      ...seedEntitlement,
      product_id: 'other',
      starts_at: '2024-06-01T00:00:00Z',
    });
    const t0 = await h.req('GET', '/v1/entitlements?tenant_id=t0');
    expect(t0.body.data).toHaveLength(3);
    expect(t0.body.next_cursor).toBeNull();
    const pending = await h.req('GET', '/v1/entitlements?status=pending');
    expect(pending.body.data.map((e: any) => e.product_id)).toEqual(['other']);
    const page1 = await h.req('GET', '/v1/entitlements?limit=4');
    expect(page1.body.data).toHaveLength(4);
    const page2 = await h.req('GET', `/v1/entitlements?limit=4&cursor=${page1.body.next_cursor}`);
    expect(page2.body.data).toHaveLength(2);
    expect(page2.body.next_cursor).toBeNull();
    const ids = new Set([...page1.body.data, ...page2.body.data].map((e: any) => e.entitlement_id));
    expect(ids.size).toBe(6);
  });

  it('finds by id prefix, case-sensitive, with _ taken literally, with the other filters', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        (await h.req('POST', '/v1/entitlements', { ...seedEntitlement, tenant_id: `t${i}` })).body
          .entitlement_id,
      );
    const one = ids[1]!;
    const found = await h.req('GET', `/v1/entitlements?id_prefix=${one.slice(0, -2)}`);
    expect(found.status).toBe(200);
    expect(found.body.data.map((e: any) => e.entitlement_id)).toEqual([one]);
    const all = await h.req(
      'GET',
      `/v1/entitlements?id_prefix=${one.slice(0, one.indexOf('_') + 1)}`,
    );
    expect(all.body.data).toHaveLength(3);
    // The id's case is its own: another case is another id.
    const swapped = one.replace(/[a-z]/g, (c) => c.toUpperCase());
    expect(swapped).not.toBe(one);
    expect((await h.req('GET', `/v1/entitlements?id_prefix=${swapped}`)).body.data).toEqual([]);
    // LIKE would take _ as any one character: a prefix with _ in another place matches nothing.
    const wild = `${one.slice(0, 2)}_`;
    expect((await h.req('GET', `/v1/entitlements?id_prefix=${wild}`)).body.data).toEqual([]);
    // With another filter, both must hold.
    const both = await h.req('GET', `/v1/entitlements?id_prefix=${one}&tenant_id=t0`);
    expect(both.body.data).toEqual([]);
    const bad = await h.req('GET', '/v1/entitlements?id_prefix=');
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
  });

  it('refuses a cursor it did not give out', async () => {
    const r = await h.req('GET', '/v1/entitlements?cursor=garbage');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
  });
});

describe('lifecycle', () => {
  it('suspends, resumes, revokes (final) and renews', async () => {
    const id = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
    expect((await h.req('POST', `/v1/entitlements/${id}/suspend`)).body.status).toBe('suspended');
    expect((await h.req('POST', `/v1/entitlements/${id}/suspend`)).body.error.code).toBe(
      'conflict',
    );
    expect((await h.req('POST', `/v1/entitlements/${id}/resume`)).body.status).toBe('active');
    const renewed = await h.req('POST', `/v1/entitlements/${id}/renew`, { period_months: 12 });
    expect(renewed.status).toBe(200);
    expect(renewed.body.ends_at).toBe('2025-12-31T23:59:59Z');
    expect((await h.req('POST', `/v1/entitlements/${id}/revoke`)).body.status).toBe('revoked');
    const resume = await h.req('POST', `/v1/entitlements/${id}/resume`);
    expect(resume.status).toBe(409);
    expect(resume.body.error.message).toContain('revocation is final');
    expect(h.store.entitlements.get(id)?.status).toBe('revoked');
    const actions = h.store.audit.page(0, 100).map((r) => r.action);
    expect(actions.slice(-5)).toEqual([
      'entitlement.create',
      'entitlement.suspend',
      'entitlement.resume',
      'entitlement.renew',
      'entitlement.revoke',
    ]);
    expect(h.services.audit.verify().firstBreak).toBeNull();
  });

  it('derives pending, active, grace and expired from the clock', async () => {
    const id = (
      await h.req('POST', '/v1/entitlements', {
        ...seedEntitlement,
        policy_json: { type: 'concurrent', max_seats: 1, grace_days: 10 },
      })
    ).body.entitlement_id;
    const status = async () => (await h.req('GET', `/v1/entitlements/${id}`)).body.status;
    h.clock.set('2023-12-31T00:00:00Z');
    expect(await status()).toBe('pending');
    h.clock.set('2024-12-31T23:59:59Z');
    expect(await status()).toBe('active');
    h.clock.set('2025-01-05T00:00:00Z');
    expect(await status()).toBe('grace');
    h.clock.set('2025-01-11T00:00:00Z');
    expect(await status()).toBe('expired');
  });

  it('renews a lapsed entitlement from today, not from its old end', async () => {
    const id = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
    h.clock.set('2025-06-01T00:00:00Z');
    const r = await h.req('POST', `/v1/entitlements/${id}/renew`, { period_months: 1 });
    expect(r.body.ends_at).toBe('2025-07-01T00:00:00Z');
    expect(r.body.status).toBe('active');
  });
});

describe('bulk import', () => {
  it('imports the seed format in one go', async () => {
    const body = {
      entitlements: [
        { ...seedEntitlement, tenant_id: 'customer-1' },
        { ...seedEntitlement, tenant_id: 'customer-2' },
      ],
    };
    const r = await h.req('POST', '/v1/entitlements/import', body);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ created: 2, updated: 0, total: 2 });
    expect(r.body.items.map((i: any) => i.index)).toEqual([0, 1]);
    expect(h.store.entitlements.count()).toBe(2);
  });

  it('applies nothing when one item is invalid, and names it by index', async () => {
    const before = h.snapshot();
    const items = [
      seedEntitlement,
      { ...seedEntitlement, policy_json: { type: 'galactic' } },
      seedEntitlement,
      { ...seedEntitlement, ends_at: '2020-01-01T00:00:00Z' },
    ];
    const r = await h.req('POST', '/v1/entitlements/import', { entitlements: items });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.message).toBe('2 of 4 entitlements are invalid; nothing was imported');
    expect(r.body.error.details.errors.map((e: any) => e.index)).toEqual([1, 3]);
    expect(r.body.error.details.errors[0].path).toBe('policy_json.type');
    expect(h.snapshot()).toEqual(before);
  });

  it('upserts by external_id and refuses a repeated external_id in one batch', async () => {
    await h.req('POST', '/v1/entitlements/import', {
      entitlements: [{ ...seedEntitlement, external_id: 'crm-1' }],
    });
    const id = h.store.entitlements.getByExternalId('crm-1')!.id;
    const again = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [
        {
          ...seedEntitlement,
          external_id: 'crm-1',
          policy_json: { type: 'concurrent', max_seats: 99 },
        },
        { ...seedEntitlement, external_id: 'crm-2' },
      ],
    });
    expect(again.body).toMatchObject({ created: 1, updated: 1 });
    expect(again.body.items[0]).toEqual({ index: 0, entitlement_id: id, action: 'updated' });
    expect(h.store.entitlements.get(id)?.policy.max_seats).toBe(99);
    const before = h.snapshot();
    const dup = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [
        { ...seedEntitlement, external_id: 'x' },
        { ...seedEntitlement, external_id: 'x' },
      ],
    });
    expect(dup.status).toBe(400);
    expect(dup.body.error.details.errors[0]).toMatchObject({ index: 1, code: 'conflict' });
    expect(h.snapshot()).toEqual(before);
  });

  it('writes only real changes: an upsert whose terms are the same is `unchanged`, its row untouched', async () => {
    const first = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [
        { ...seedEntitlement, external_id: 'crm-1' },
        { ...seedEntitlement, external_id: 'crm-2' },
      ],
    });
    expect(first.body).toMatchObject({ created: 2, updated: 0, unchanged: 0, total: 2 });
    const [one, two] = ['crm-1', 'crm-2'].map((x) => h.store.entitlements.getByExternalId(x)!);
    h.clock.advance(60_000);
    const again = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [
        { ...seedEntitlement, external_id: 'crm-1' },
        {
          ...seedEntitlement,
          external_id: 'crm-2',
          policy_json: { type: 'concurrent', max_seats: 99 },
        },
      ],
    });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: 0, updated: 1, unchanged: 1, total: 2 });
    expect(again.body.items).toEqual([
      { index: 0, entitlement_id: one!.id, action: 'unchanged' },
      { index: 1, entitlement_id: two!.id, action: 'updated' },
    ]);
    expect(h.store.entitlements.get(one!.id)).toEqual(one);
    expect(h.store.entitlements.get(two!.id)).toMatchObject({
      policy: { max_seats: 99 },
      updatedAt: h.clock.now(),
    });
    const audit = h.store.audit
      .page(0, 1000)
      .filter((r) => r.action === 'entitlement.import')
      .at(-1)!;
    expect(JSON.parse(audit.details)).toEqual({
      count: 2,
      created: [],
      updated: [two!.id],
      unchanged: 1,
    });
  });

  it('takes a body above the 1 MiB limit of other routes', async () => {
    const items = Array.from({ length: 5000 }, (_, i) => ({
      ...seedEntitlement,
      external_id: `bulk-${i}`,
    }));
    const r = await h.req('POST', '/v1/entitlements/import', { entitlements: items });
    expect(r.status).toBe(200);
    expect(r.body.created).toBe(5000);
    expect(h.services.audit.verify()).toMatchObject({ firstBreak: null });
  });
});

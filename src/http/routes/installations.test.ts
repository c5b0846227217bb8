// Installations over HTTP: the quota race through a real listening server, idempotency keys, the
// grace rule, tenant scope, quotas in check / usage / usage.csv, and policy_json.quotas validation.
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createHarness,
  seedEntitlement,
  tempDir,
  SEED_NOW,
  type Harness,
} from '../../../test/helpers.ts';
import { ManualClock } from '../../clock.ts';
import { createIdentity, dataPaths } from '../../data-dir.ts';
import { openStore } from '../../storage/store.ts';
import { startServer } from '../../server.ts';
import { silentLogger } from '../../log.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const withQuotas = (quotas: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  ...seedEntitlement,
  policy_json: { ...seedEntitlement.policy_json, quotas },
  ...extra,
});
async function entitlement(quotas: Record<string, number> = { dashboards: 2 }, extra = {}) {
  const r = await h.req('POST', '/v1/entitlements', withQuotas(quotas, extra));
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.entitlement_id as string;
}
const install = (id: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  h.req('POST', `/v1/entitlements/${id}/installations`, body, undefined, headers);
const count = (id: string) =>
  (
    h.store.db
      .prepare('SELECT count(*) AS n FROM installations WHERE entitlement_id = ?')
      .get(id) as { n: number }
  ).n;

describe('the quota race', () => {
  it('installs exactly 5 of 300 simultaneous requests through a listening server; 295 answer 409 quota_exhausted', async () => {
    const dir = tempDir();
    const clock = new ManualClock(SEED_NOW);
    createIdentity(dir, clock.now());
    openStore(dataPaths(dir).db).close();
    const server = await startServer(
      { dataDir: dir, nativeCacheDir: dir, host: '127.0.0.1', port: 0, durability: 'full', clock },
      silentLogger,
    );
    try {
      const token = server.ctx.services.apiTokens.create(
        { name: 'a', role: 'admin' },
        'test',
      ).token;
      const call = (path: string, body: unknown) =>
        fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const made = await call('/v1/entitlements', withQuotas({ dashboards: 5 }));
      const id = ((await made.json()) as { entitlement_id: string }).entitlement_id;
      const answers = await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          const r = await call(`/v1/entitlements/${id}/installations`, {
            quota: 'dashboards',
            name: `d${i}`,
          });
          return { status: r.status, body: (await r.json()) as any };
        }),
      );
      const created = answers.filter((a) => a.status === 201);
      const refused = answers.filter((a) => a.status === 409);
      expect(created).toHaveLength(5);
      expect(refused).toHaveLength(295);
      for (const r of refused) {
        expect(r.body.error.code).toBe('quota_exhausted');
        expect(r.body.error.details).toEqual({
          entitlement_id: id,
          quota: 'dashboards',
          limit: 5,
          used: 5,
        });
      }
      const store = server.ctx.store;
      const rows = store.installations.list({ entitlementId: id, afterSeq: 0, limit: 1000 });
      expect(rows.map((r) => r.id).sort()).toEqual(
        created.map((c) => c.body.installation_id).sort(),
      );
      expect(store.audit.page(0, 1000).filter((r) => r.action === 'installation.add')).toHaveLength(
        5,
      );
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('POST /v1/entitlements/{id}/installations', () => {
  it('answers 201 with the installation, then 200 with the same one for its Idempotency-Key', async () => {
    const id = await entitlement({ dashboards: 2 });
    const body = {
      quota: 'dashboards',
      name: 'Sales',
      metadata: { theme: 'dark' },
      version: '1.2.0',
      principal_id: 'alice',
    };
    const first = await install(id, body, { 'idempotency-key': 'k-1' });
    expect(first.status).toBe(201);
    expect(first.body).toEqual({
      installation_id: expect.stringMatching(/^inst_/),
      entitlement_id: id,
      quota: 'dashboards',
      name: 'Sales',
      metadata: { theme: 'dark' },
      version: '1.2.0',
      principal_id: 'alice',
      idempotency_key: 'k-1',
      created_at: '2024-01-15T10:30:00Z',
      updated_at: '2024-01-15T10:30:00Z',
    });
    // The key in the body is the same key.
    const again = await install(id, { ...body, idempotency_key: 'k-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(count(id)).toBe(1);

    const other = await install(id, { ...body, name: 'Other' }, { 'idempotency-key': 'k-1' });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('conflict');
    expect(other.body.error.details.installation_id).toBe(first.body.installation_id);
    const both = await install(id, { ...body, idempotency_key: 'a' }, { 'idempotency-key': 'b' });
    expect(both.status).toBe(400);
    expect(both.body.error.details.issues[0].path).toBe('idempotency_key');
    expect(count(id)).toBe(1);
  });

  it('gives 50 simultaneous requests with one key one installation', async () => {
    const id = await entitlement({ dashboards: 5 });
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        install(id, { quota: 'dashboards', name: 'Sales' }, { 'idempotency-key': 'same' }),
      ),
    );
    expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(49);
    expect(new Set(answers.map((a) => a.body.installation_id)).size).toBe(1);
    expect(count(id)).toBe(1);
  });

  it.each([
    ['a quota the policy lacks', { quota: 'widgets', name: 'x' }, 'quota'],
    ['a quota name that is no slug', { quota: 'Dash', name: 'x' }, 'quota'],
    ['no name', { quota: 'dashboards' }, 'name'],
    ['metadata that is an array', { quota: 'dashboards', name: 'x', metadata: [1] }, 'metadata'],
    [
      'metadata over 16 KiB',
      { quota: 'dashboards', name: 'x', metadata: { big: 'x'.repeat(20_000) } },
      'metadata',
    ],
    ['an empty version', { quota: 'dashboards', name: 'x', version: '' }, 'version'],
    ['an unknown field', { quota: 'dashboards', name: 'x', extra: 1 }, '(root)'],
  ])('refuses %s with 400 invalid_request naming %s, writing nothing', async (_, body, path) => {
    const id = await entitlement({ dashboards: 2 });
    const before = h.snapshot();
    const r = await install(id, body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.details.issues[0].path).toBe(path);
    expect(h.snapshot()).toEqual(before);
  });

  it('is refused to a reader, and hidden from another tenant’s token', async () => {
    const id = await entitlement({ dashboards: 2 });
    const r = await h.req(
      'POST',
      `/v1/entitlements/${id}/installations`,
      { quota: 'dashboards', name: 'x' },
      h.reader,
    );
    expect(r.status).toBe(403);
    const mine = h.services.apiTokens.create(
      { name: 't', role: 'tenant_admin', tenantId: 'customer-tenant-id' },
      'test',
    ).token;
    const theirs = h.services.apiTokens.create(
      { name: 'o', role: 'tenant_admin', tenantId: 'other' },
      'test',
    ).token;
    const made = await h.req(
      'POST',
      `/v1/entitlements/${id}/installations`,
      { quota: 'dashboards', name: 'x' },
      mine,
    );
    expect(made.status).toBe(201);
    const inst = made.body.installation_id;
    expect((await h.req('GET', `/v1/installations/${inst}`, undefined, theirs)).status).toBe(404);
    expect((await h.req('GET', `/v1/installations`, undefined, theirs)).body.data).toEqual([]);
    expect(
      (await h.req('GET', `/v1/installations?tenant_id=customer-tenant-id`, undefined, theirs)).body
        .data,
    ).toEqual([]);
    expect(
      (await h.req('PATCH', `/v1/installations/${inst}`, { version: '2' }, theirs)).status,
    ).toBe(404);
    expect((await h.req('GET', `/v1/installations`, undefined, mine)).body.data).toHaveLength(1);
    expect(count(id)).toBe(1);
  });
});

describe('the grace rule', () => {
  it('in grace refuses new installations (403 entitlement_inactive, status grace) and changes; reads and removals work', async () => {
    const id = await entitlement({ dashboards: 3 });
    const a = (await install(id, { quota: 'dashboards', name: 'Sales' })).body.installation_id;
    const b = (await install(id, { quota: 'dashboards', name: 'Ops' })).body.installation_id;
    h.clock.set('2025-01-05T00:00:00Z');
    const before = h.snapshot();
    const r = await install(id, { quota: 'dashboards', name: 'New' });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('entitlement_inactive');
    expect(r.body.error.details).toMatchObject({ reason: 'expired', status: 'grace' });
    const p = await h.req('PATCH', `/v1/installations/${a}`, { version: '2.0' });
    expect(p.status).toBe(403);
    expect(h.snapshot()).toEqual(before);

    expect((await h.req('GET', `/v1/installations/${a}`)).body.name).toBe('Sales');
    const listed = await h.req('GET', `/v1/entitlements/${id}/installations`);
    expect(listed.body.data.map((i: any) => i.name)).toEqual(['Sales', 'Ops']);
    const check = await h.req('GET', `/v1/entitlements/${id}/check`);
    expect(check.body).toMatchObject({
      status: 'grace',
      quotas: { dashboards: { limit: 3, used: 2, remaining: 1 } },
    });
    expect((await h.req('DELETE', `/v1/entitlements/${id}/installations/${b}`)).status).toBe(200);
    expect(count(id)).toBe(1);

    // After grace: the admin still reads them; check says the product is off (status expired).
    h.clock.set('2025-03-01T00:00:00Z');
    expect((await h.req('GET', `/v1/installations/${a}`)).status).toBe(200);
    const after = await h.req('GET', `/v1/entitlements/${id}/check`);
    expect(after.body).toMatchObject({
      status: 'expired',
      can_lease: false,
      quotas: { dashboards: { limit: 3, used: 1, remaining: 2 } },
    });
    expect(
      (await install(id, { quota: 'dashboards', name: 'New' })).body.error.details.reason,
    ).toBe('expired');
    expect(count(id)).toBe(1);
  });
});

describe('quotas in check, the entitlement, usage and usage.csv', () => {
  it('answers per-quota limit, used and remaining; a policy without quotas answers as before', async () => {
    const id = await entitlement({ dashboards: 2, reports: 1 });
    await install(id, { quota: 'dashboards', name: 'Sales' });
    const want = {
      dashboards: { limit: 2, used: 1, remaining: 1 },
      reports: { limit: 1, used: 0, remaining: 1 },
    };
    expect((await h.req('GET', `/v1/entitlements/${id}/check`)).body.quotas).toEqual(want);
    expect((await h.req('GET', `/v1/entitlements/${id}`)).body.quotas).toEqual(want);
    expect((await h.req('GET', `/v1/entitlements/${id}/usage`)).body.quotas).toEqual(want);
    const plain = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
    for (const path of ['check', 'usage', ''])
      expect(
        (await h.req('GET', `/v1/entitlements/${plain}${path ? `/${path}` : ''}`)).body,
      ).not.toHaveProperty('quotas');
  });

  it('lowering a limit under use keeps the installations; remaining shows 0, never negative', async () => {
    const id = await entitlement({ dashboards: 3 });
    for (const name of ['a', 'b', 'c']) await install(id, { quota: 'dashboards', name });
    const put = await h.req('PUT', `/v1/entitlements/${id}`, {
      policy_json: withQuotas({ dashboards: 1 }).policy_json,
    });
    expect(put.status).toBe(200);
    expect(count(id)).toBe(3);
    expect((await h.req('GET', `/v1/entitlements/${id}/check`)).body.quotas).toEqual({
      dashboards: { limit: 1, used: 3, remaining: 0 },
    });
    expect((await install(id, { quota: 'dashboards', name: 'd' })).body.error.code).toBe(
      'quota_exhausted',
    );
  });

  it('usage.csv adds installed, removed, in-use-at-day-end and limit columns per quota', async () => {
    const id = await entitlement({ dashboards: 3 });
    const a = (await install(id, { quota: 'dashboards', name: 'a' })).body.installation_id;
    await install(id, { quota: 'dashboards', name: 'b' });
    h.clock.set('2024-01-17T09:00:00Z');
    await h.req('DELETE', `/v1/entitlements/${id}/installations/${a}`);
    await install(id, { quota: 'dashboards', name: 'c' });
    await install(id, { quota: 'dashboards', name: 'd' });
    h.clock.set('2024-01-18T09:00:00Z');
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        product_id: 'your-product-id',
        tenant_id: 'customer-tenant-id',
        subject_type: 'user',
        subject_id: 'u1',
      },
      null,
    );
    const csv = (await h.req('GET', `/v1/entitlements/${id}/usage.csv?days=7`)).text;
    expect(csv.split('\r\n')).toEqual([
      'date,entitlement_id,tenant_id,product_id,grants,renewals,releases,denials,peak_concurrent,unique_subjects,overdraft_grants,borrows,quota_dashboards_installed,quota_dashboards_removed,quota_dashboards_in_use,quota_dashboards_limit',
      `2024-01-15,${id},customer-tenant-id,your-product-id,0,0,0,0,0,0,0,0,2,0,2,3`,
      `2024-01-17,${id},customer-tenant-id,your-product-id,0,0,0,0,0,0,0,0,2,1,3,3`,
      `2024-01-18,${id},customer-tenant-id,your-product-id,1,0,0,0,1,1,0,0,0,0,3,3`,
      '',
    ]);
  });
});

describe('policy_json.quotas', () => {
  it.each([
    [{ 'Bad Name': 1 }],
    [{ dashboards: -1 }],
    [{ dashboards: 1.5 }],
    [{ dashboards: '5' }],
    [{ dashboards: 1_000_001 }],
    [Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`q${i}`, 1]))],
    // As JSON text it is a key like any other; parsed, JavaScript would drop it silently.
    [JSON.parse('{"__proto__": 2, "dashboards": 1}')],
    [[5]],
  ])('refuses %j with 400 invalid_request, creating nothing', async (quotas) => {
    const before = h.snapshot();
    const r = await h.req(
      'POST',
      '/v1/entitlements',
      withQuotas(quotas as Record<string, unknown>),
    );
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.details.issues[0].path).toMatch(/^policy_json\.quotas/);
    expect(h.snapshot()).toEqual(before);
  });

  it('takes 0 (no unit) and keeps the quotas in the answer', async () => {
    const r = await h.req('POST', '/v1/entitlements', withQuotas({ dashboards: 0 }));
    expect(r.status).toBe(201);
    expect(r.body.policy_json.quotas).toEqual({ dashboards: 0 });
    expect(
      (await install(r.body.entitlement_id, { quota: 'dashboards', name: 'x' })).body.error.code,
    ).toBe('quota_exhausted');
  });
});

/**
 * The role-by-route matrix: every admin route the app registers, called by every kind of token,
 * answers as the permission table (src/http/permissions.ts) says.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../helpers.ts';
import { ROUTES, roleAllows, type RouteKey, type RouteRule } from '../../src/http/permissions.ts';
import type { Role } from '../../src/domain/types.ts';

const PUBLIC = new Set([
  'GET /admin',
  'GET /admin/', // a 308 to /admin
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /openapi.json',
  'POST /v1/license/lease',
  'POST /v1/license/lease/renew',
  'POST /v1/license/lease/release',
  'GET /v1/license/keys',
]);

interface World {
  h: Harness;
  entA: string;
  seatA: string;
  /** A second seat on entA, for the face's seat revoke (the /v1 one revokes seatA first). */
  seatFace: string;
  /** A dashboard (an installation) of tenant-a's template license. */
  dashboard: string;
  leaseA: string;
  spareToken: string;
  /** Installations of entA's quota: one to read and change, one to remove. */
  instA: string;
  instGone: string;
}

async function world(): Promise<World> {
  const h = createHarness();
  const create = async (tenant: string) =>
    (
      await h.req('POST', '/v1/entitlements', {
        ...seedEntitlement,
        tenant_id: tenant,
        policy_json: { type: 'per_user', max_seats: 5, quotas: { dashboards: 5 } },
        ends_at: '2030-01-01T00:00:00Z',
      })
    ).body.entitlement_id as string;
  const entA = await create('tenant-a');
  await create('tenant-b');
  const seatA = (
    await h.req('POST', `/v1/entitlements/${entA}/seats`, {
      subject_type: 'user',
      subject_id: 'u1',
    })
  ).body.seat_id as string;
  const leaseA = (
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        tenant_id: 'tenant-a',
        product_id: 'your-product-id',
        subject_type: 'user',
        subject_id: 'u2',
      },
      null,
    )
  ).body.lease_id as string;
  const spareToken = h.services.apiTokens.create({ name: 'spare', role: 'reader' }, 'test').record
    .id;
  const install = async (name: string) =>
    (await h.req('POST', `/v1/entitlements/${entA}/installations`, { quota: 'dashboards', name }))
      .body.installation_id as string;
  const instA = await install('read me');
  const instGone = await install('remove me');
  // The Template Licensing face: entA is tenant-a's license for the template your-product-id.
  const seatFace = h.services.seats.assign(
    entA,
    [{ subjectType: 'user', subjectId: 'u9' }],
    'test',
  )[0]!.id;
  await h.req('PUT', '/api/v1/marketplace/templates/your-product-id', {
    name: 'Your product',
    version: '1.0.0',
  });
  await h.req('POST', '/api/v1/marketplace/templates/your-product-id/licenses', {
    organization_id: 'tenant-a',
    license_type: 'unlimited',
  });
  const dashboard = (
    await h.req('POST', '/api/v1/organizations/tenant-a/templates/your-product-id/install', {
      name: 'A dashboard',
    })
  ).body.dashboard_id as string;
  return { h, entA, seatA, seatFace, dashboard, leaseA, spareToken, instA, instGone };
}

function pathFor(route: string, w: World): string {
  const path = route.slice(route.indexOf(' ') + 1);
  if (path.startsWith('/v1/tokens/')) return path.replace(':id', w.spareToken);
  if (path.startsWith('/v1/leases/')) return path.replace(':id', w.leaseA);
  if (path.startsWith('/v1/installations/')) return path.replace(':id', w.instA);
  return path
    .replace(':id', w.entA)
    .replace(':seat_id', path.startsWith('/api/') ? w.seatFace : w.seatA)
    .replace(':installation_id', w.instGone)
    .replace(':org', 'tenant-a')
    .replace(':license_id', w.entA)
    .replace(':template_id', 'your-product-id')
    .replace(':dashboard_id', w.dashboard);
}

const principals: Array<[string, Role, string | null]> = [
  ['admin', 'admin', null],
  ['reader', 'reader', null],
  ['reader of tenant-a', 'reader', 'tenant-a'],
  ['tenant_admin of tenant-a', 'tenant_admin', 'tenant-a'],
  ['tenant_admin of tenant-b', 'tenant_admin', 'tenant-b'],
];

let w: World | undefined;
afterEach(() => w?.h.close());

describe('the permission table', () => {
  it('has a row for every admin route the app registers, and no row without a route', async () => {
    w = await world();
    const registered = new Set(
      w.h.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`),
    );
    for (const key of registered)
      if (!PUBLIC.has(key)) expect(Object.keys(ROUTES), key).toContain(key);
    for (const key of Object.keys(ROUTES)) expect([...registered], key).toContain(key);
  });

  describe.each(principals)('a %s token', (_name, role, tenant) => {
    it('gets exactly what the table allows on every route', async () => {
      w = await world();
      const token = w.h.services.apiTokens.create(
        { name: 'probe', role, tenantId: tenant ?? undefined },
        'test',
      ).token;
      for (const [key, rule] of Object.entries(ROUTES) as Array<[RouteKey, RouteRule]>) {
        const method = key.slice(0, key.indexOf(' '));
        const path = pathFor(key, w);
        const res = await w.h.app.request(path, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: method === 'GET' ? undefined : '{}',
        });
        const body = (await res.clone().text()).startsWith('{')
          ? ((await res.json()) as any)
          : undefined;
        const what = `${role}${tenant ? `@${tenant}` : ''} ${key} → ${res.status} ${JSON.stringify(body?.error ?? '')}`;
        if (!roleAllows(role, rule.permission) || (rule.global && tenant !== null)) {
          expect(res.status, what).toBe(403);
          expect(body.error.code, what).toBe('forbidden');
        } else if (tenant === 'tenant-b' && (key.includes(':id') || key.includes(':org'))) {
          // Another tenant's entitlement, lease or installation, or organization (the Template
          // Licensing face), is answered as if it did not exist.
          expect(res.status, what).toBe(404);
          expect(body.error.message, what).toMatch(
            /^no (entitlement|lease|installation|license|organization|dashboard) /,
          );
        } else {
          expect([401, 403, 404], what).not.toContain(res.status);
          if (tenant !== null && Array.isArray(body?.data)) {
            for (const row of body.data)
              if ('tenant_id' in row) expect(row.tenant_id, what).toBe(tenant);
          }
        }
      }
    });
  });
});

describe('tenant-scoped tokens', () => {
  it('let a tenant admin manage its own seats and leases and nothing else', async () => {
    w = await world();
    const { h, entA } = w;
    const tA = h.services.apiTokens.create(
      { name: 'a', role: 'tenant_admin', tenantId: 'tenant-a' },
      'test',
    ).token;
    const tB = h.services.apiTokens.create(
      { name: 'b', role: 'tenant_admin', tenantId: 'tenant-b' },
      'test',
    ).token;
    expect(
      (
        await h.req(
          'POST',
          `/v1/entitlements/${entA}/seats`,
          { subject_type: 'user', subject_id: 'u7' },
          tA,
        )
      ).status,
    ).toBe(201);
    const foreign = await h.req(
      'POST',
      `/v1/entitlements/${entA}/seats`,
      { subject_type: 'user', subject_id: 'u8' },
      tB,
    );
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.message).toBe(`no entitlement ${entA}`);
    const missing = await h.req('GET', '/v1/entitlements/ent_doesnotexist', undefined, tB);
    expect(missing.body.error.message).toBe('no entitlement ent_doesnotexist');
    expect(
      (await h.req('GET', '/v1/entitlements', undefined, tB)).body.data.map(
        (e: any) => e.tenant_id,
      ),
    ).toEqual(['tenant-b']);
    expect(
      (await h.req('GET', '/v1/entitlements?tenant_id=tenant-a', undefined, tB)).body.data,
    ).toEqual([]);
    expect((await h.req('GET', '/v1/leases', undefined, tB)).body.data).toEqual([]);
    expect((await h.req('GET', '/v1/leases', undefined, tA)).body.data).toHaveLength(1);
    expect(
      (
        await h.req(
          'PUT',
          `/v1/entitlements/${entA}`,
          { policy_json: { type: 'per_user', max_seats: 500 } },
          tA,
        )
      ).status,
    ).toBe(403);
    expect(h.store.entitlements.get(entA)?.policy.max_seats).toBe(5);
  });

  it('are made only with a tenant for tenant_admin, and never for admin', async () => {
    w = await world();
    const bad1 = await w.h.req('POST', '/v1/tokens', { name: 'x', role: 'tenant_admin' });
    expect(bad1.status).toBe(400);
    expect(bad1.body.error.message).toContain('a tenant_admin token needs tenant_id');
    const bad2 = await w.h.req('POST', '/v1/tokens', {
      name: 'x',
      role: 'admin',
      tenant_id: 'tenant-a',
    });
    expect(bad2.body.error.message).toContain('an admin token spans every tenant');
    const ok = await w.h.req('POST', '/v1/tokens', {
      name: 'x',
      role: 'tenant_admin',
      tenant_id: 'tenant-a',
    });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ role: 'tenant_admin', tenant_id: 'tenant-a' });
  });
});

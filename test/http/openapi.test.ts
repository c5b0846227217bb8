/**
 * GET /openapi.json: the document names every route the app serves (every row of the permission
 * table and the lease routes) and no other, with the permission, parameters and request schema of
 * each, is OpenAPI 3.1 in structure, and real requests and answers of a working server validate
 * against its schemas (test/json-schema.ts), error answers included, with codes it lists.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../helpers.ts';
import { ROUTES, type RouteKey } from '../../src/http/permissions.ts';
import { LEASE_PATHS } from '../../src/http/limits.ts';
import { ROUTE_DOCS } from '../../src/http/openapi/routes.ts';
import { buildOpenApi } from '../../src/http/openapi/build.ts';
import { resolve, validate } from '../json-schema.ts';

let h: Harness;
let doc: any;
beforeEach(async () => {
  h = createHarness();
  const r = await h.req('GET', '/openapi.json', undefined, null);
  expect(r.status).toBe(200);
  doc = r.body;
});
afterEach(() => h.close());

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const toKey = (method: string, path: string) =>
  `${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`;
const documented = () =>
  Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
    Object.keys(ops).map((m) => toKey(m, path)),
  );
const operation = (key: string) => {
  const [method, path] = key.split(' ') as [string, string];
  return doc.paths[path.replace(/:([A-Za-z_]+)/g, '{$1}')]?.[method.toLowerCase()];
};

describe('GET /openapi.json', () => {
  it('is public, JSON, through the pipeline (request id), built once, and changes nothing', async () => {
    const before = h.snapshot();
    const a = await h.req('GET', '/openapi.json', undefined, null, { 'x-request-id': 'doc-1' });
    const b = await h.req('GET', '/openapi.json', undefined, 'not-a-token');
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(a.headers.get('content-type')).toMatch(/^application\/json/);
    expect(a.headers.get('x-request-id')).toBe('doc-1');
    expect(a.text).toBe(b.text);
    expect(a.body).toEqual(JSON.parse(JSON.stringify(buildOpenApi())));
    expect(h.snapshot()).toEqual(before);
  });

  it('is OpenAPI 3.1 in structure, and every $ref leads somewhere', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info).toMatchObject({ title: 'bp-license-server', version: expect.any(String) });
    expect(typeof doc.paths).toBe('object');
    expect(Object.keys(doc.components.schemas).length).toBeGreaterThan(20);
    expect(doc.components.securitySchemes.bearer).toEqual(
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    );
    const ids = new Set<string>();
    const walk = (node: unknown, where: string): void => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${where}[${i}]`));
      if (node === null || typeof node !== 'object') return;
      for (const [k, v] of Object.entries(node)) {
        if (k === '$ref') expect(() => resolve(doc, v as string), where).not.toThrow();
        else walk(v, `${where}.${k}`);
      }
    };
    walk(doc, '$');
    for (const [path, ops] of Object.entries(doc.paths as Record<string, any>)) {
      expect(path.startsWith('/'), path).toBe(true);
      for (const [method, op] of Object.entries(ops as Record<string, any>)) {
        expect(METHODS, `${path} ${method}`).toContain(method);
        expect(op.summary, `${method} ${path}`).toEqual(expect.any(String));
        expect(Object.keys(op.responses).length, `${method} ${path}`).toBeGreaterThan(0);
        for (const [status, res] of Object.entries(op.responses as Record<string, any>)) {
          expect(status, `${method} ${path}`).toMatch(/^[1-5]\d\d$/);
          expect(res.description, `${method} ${path} ${status}`).toEqual(expect.any(String));
        }
        expect(ids.has(op.operationId), op.operationId).toBe(false);
        ids.add(op.operationId);
        // Every {name} of the path is a required path parameter, and no other.
        const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
        const inPath = (op.parameters ?? []).filter((p: any) => p.in === 'path');
        expect(inPath.map((p: any) => p.name).sort(), path).toEqual(names.sort());
        for (const p of inPath) expect(p.required, `${path} ${p.name}`).toBe(true);
      }
    }
  });

  it('documents every route of the permission table and the lease routes, and only routes that exist', () => {
    const docs = documented();
    const registered = new Set(
      h.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`),
    );
    for (const key of Object.keys(ROUTES) as RouteKey[]) {
      const op = operation(key);
      expect(op, key).toBeDefined();
      expect(op['x-permission'], key).toBe(ROUTES[key].permission);
      expect(op['x-global'] === true, key).toBe('global' in ROUTES[key]);
      expect(op.security, key).toEqual([{ bearer: [] }]);
    }
    for (const path of LEASE_PATHS) {
      const op = operation(`POST ${path}`);
      expect(op, path).toBeDefined();
      expect(op.security, path).toEqual([]);
      expect(op['x-permission'], path).toBe('none');
    }
    for (const key of docs)
      expect(registered.has(key), `${key} is documented, not served`).toBe(true);
    // Every route the app serves is documented; the console's own assets under /admin/ are not API.
    for (const key of registered)
      if (!key.includes(' /admin/'))
        expect(docs, `${key} is served, not documented`).toContain(key);
    expect(docs.length).toBe(Object.keys(ROUTE_DOCS).length);
  });

  it('has the request schema of every route that takes a body, and the query of every route that reads one', () => {
    for (const [key, d] of Object.entries(ROUTE_DOCS)) {
      const op = operation(key);
      if (d.body === undefined) {
        expect(op.requestBody, key).toBeUndefined();
      } else {
        const content = op.requestBody.content;
        const json = content['application/json'];
        if (json) expect(() => resolve(doc, json.schema.$ref), key).not.toThrow();
        else expect(Object.keys(content), key).toEqual(['application/octet-stream']);
      }
      const query = (op.parameters ?? []).filter((p: any) => p.in === 'query');
      expect(query.map((p: any) => p.name).sort(), key).toEqual(
        Object.keys(d.query?.shape ?? {}).sort(),
      );
    }
    // The routes' own schemas, not copies: the create body's required fields are the schema's.
    expect(doc.components.schemas.EntitlementCreate.required.sort()).toEqual(
      ['ends_at', 'policy_json', 'product_id', 'starts_at', 'tenant_id'].sort(),
    );
    expect(doc.components.schemas.EntitlementCreate.properties.starts_at.format).toBe('date-time');
  });
});

describe('real requests and answers validate against the document', () => {
  /** The routes whose answers were checked against the document. */
  const called = new Set<string>();

  /** Sends a request, checks its JSON body and its answer against the document, and returns it. */
  async function call(
    key: string,
    args: Record<string, string>,
    body?: unknown,
    token?: string | null,
  ) {
    const op = operation(key);
    expect(op, key).toBeDefined();
    const [method, template] = key.split(' ') as [string, string];
    const path = template.replace(/:([A-Za-z_]+)/g, (_m, n: string) => args[n] ?? '');
    const query = Object.entries(args).filter(([k]) => !template.includes(`:${k}`));
    const url = query.length > 0 ? `${path}?${new URLSearchParams(query)}` : path;
    if (body !== undefined) {
      const schema = op.requestBody.content['application/json'].schema;
      expect(validate(doc, schema, body), `${key} request`).toEqual([]);
    }
    const r = await h.req(method, url, body, token === undefined ? h.admin : token);
    check(key, r);
    return r;
  }

  /** Checks an answer against the document: its status is listed, its body fits that schema. */
  function check(key: string, r: Awaited<ReturnType<Harness['req']>>) {
    called.add(key);
    const op = operation(key);
    const res = op.responses[String(r.status)];
    expect(res, `${key} answered ${r.status}: ${r.text.slice(0, 300)}`).toBeDefined();
    const json = res.content?.['application/json'];
    if (json) {
      expect(
        validate(doc, json.schema, r.body),
        `${key} ${r.status} ${r.text.slice(0, 300)}`,
      ).toEqual([]);
      if (res['x-error-codes']) expect(res['x-error-codes'], key).toContain(r.body.error.code);
    } else {
      const type = Object.keys(res.content)[0]!;
      expect(r.headers.get('content-type'), key).toContain(type);
    }
  }

  it('entitlements, seats, leases, tokens, sync, audit and health, answers and refusals', async () => {
    const perUser = {
      ...seedEntitlement,
      policy_json: { type: 'per_user', max_seats: 2, features: ['feature-a'] },
    };
    const e = (await call('POST /v1/entitlements', {}, perUser)).body.entitlement_id as string;
    expect(h.store.entitlements.get(e)?.policy.max_seats).toBe(2);
    const c = (await call('POST /v1/entitlements', {}, seedEntitlement)).body.entitlement_id;
    await call('GET /v1/entitlements', { limit: '1' });
    await call('GET /v1/entitlements/:id', { id: e });
    await call('PATCH /v1/entitlements/:id', { id: e }, { external_id: 'crm-7' });
    await call('PUT /v1/entitlements/:id', { id: c }, { ends_at: '2025-06-30T00:00:00Z' });
    const seat = (
      await call('POST /v1/entitlements/:id/seats', { id: e }, { principal_id: 'alice' })
    ).body.seat_id;
    await call('POST /v1/entitlements/:id/seats/bulk', { id: e }, { principal_ids: ['bob'] });
    await call('GET /v1/entitlements/:id/seats', { id: e });
    const lease = {
      product_id: 'your-product-id',
      tenant_id: 'customer-tenant-id',
      subject_type: 'user',
      subject_id: 'alice',
      entitlement_id: e,
    };
    const l = (await call('POST /v1/license/lease', {}, lease, null)).body.lease_id;
    await call('POST /v1/license/lease/renew', {}, { lease_id: l }, null);
    await call('GET /v1/leases', { entitlement_id: e });
    await call('GET /v1/license/status', {
      product_id: 'your-product-id',
      subject_type: 'user',
      subject_id: 'alice',
    });
    await call('GET /v1/entitlements/:id/check', { id: e, subject_id: 'bob' });
    await call('GET /v1/entitlements/:id/usage', { id: e });
    await call('GET /v1/entitlements/:id/usage.csv', { id: e, days: '7' });
    await call('POST /v1/license/lease/release', {}, { lease_id: l }, null);
    expect(h.store.leases.get(l)?.state).toBe('released');
    await call('DELETE /v1/entitlements/:id/seats/:seat_id', { id: e, seat_id: seat });
    const l2 = (await call('POST /v1/license/lease', {}, { ...lease, entitlement_id: c }, null))
      .body.lease_id;
    await call('POST /v1/leases/:id/revoke', { id: l2 });
    await call('POST /v1/entitlements/:id/suspend', { id: c });
    await call('POST /v1/entitlements/:id/resume', { id: c });
    await call('POST /v1/entitlements/:id/renew', { id: c }, { period_months: 12 });
    await call('POST /v1/entitlements/:id/revoke', { id: c });
    expect(h.store.entitlements.get(c)?.status).toBe('revoked');
    await call(
      'POST /v1/entitlements/import',
      {},
      { entitlements: [{ ...seedEntitlement, external_id: 'crm-9' }] },
    );
    const t = (
      await call('POST /v1/tokens', {}, { name: 'ops', role: 'tenant_admin', tenant_id: 'x' })
    ).body.token_id;
    await call('GET /v1/tokens', {});
    await call('DELETE /v1/tokens/:id', { id: t });
    await call('GET /v1/sync/status', {});
    const raw = (path: string, body?: string) =>
      h.req('POST', path, body, h.admin, { 'content-type': 'application/octet-stream' });
    const rejected = await raw('/v1/sync/import?dry_run=true', 'not a bundle');
    expect(rejected.body.error.code).toBe('bundle_rejected');
    check('POST /v1/sync/import', rejected);
    const exported = await raw('/v1/sync/export');
    expect(exported.status).toBe(200);
    check('POST /v1/sync/export', exported);
    expect(h.services.sync.status().last_export).not.toBeNull();
    await call('GET /v1/audit', { limit: '5' });
    await call('GET /v1/license/keys', {}, undefined, null);
    await call('GET /healthz', {}, undefined, null);
    await call('GET /readyz', {}, undefined, null);
    await call('GET /metrics', {}, undefined, null);
    await call('GET /admin', {}, undefined, null);
    await call('GET /v1/whoami', {});
    await call('GET /openapi.json', {}, undefined, null);
    const q = (
      await call(
        'POST /v1/entitlements',
        {},
        { ...seedEntitlement, policy_json: { type: 'feature_based', quotas: { dashboards: 1 } } },
      )
    ).body.entitlement_id as string;
    const install = { quota: 'dashboards', name: 'Sales', idempotency_key: 'k1' };
    const inst = (await call('POST /v1/entitlements/:id/installations', { id: q }, install)).body
      .installation_id as string;
    expect((await call('POST /v1/entitlements/:id/installations', { id: q }, install)).status).toBe(
      200,
    );
    const full = { quota: 'dashboards', name: 'More' };
    expect(
      (await call('POST /v1/entitlements/:id/installations', { id: q }, full)).body.error.code,
    ).toBe('quota_exhausted');
    await call('GET /v1/entitlements/:id/installations', { id: q, quota: 'dashboards' });
    await call('GET /v1/installations', { tenant_id: 'customer-tenant-id' });
    await call('GET /v1/installations/:id', { id: inst });
    await call('PATCH /v1/installations/:id', { id: inst }, { version: '1.2.0' });
    expect((await call('GET /v1/entitlements/:id/check', { id: q })).body.quotas).toEqual({
      dashboards: { limit: 1, used: 1, remaining: 0 },
    });
    await call('GET /v1/entitlements/:id', { id: q });
    await call('GET /v1/entitlements/:id/usage', { id: q });
    await call('DELETE /v1/entitlements/:id/installations/:installation_id', {
      id: q,
      installation_id: inst,
    });
    expect(h.store.installations.get(inst)).toBeUndefined();

    // The Template Licensing face (/api/v1).
    const tmpl = { template_id: 'tmpl_sales' };
    await call('PUT /api/v1/marketplace/templates/:template_id', tmpl, {
      name: 'Sales Analytics Dashboard',
      version: '1.2.0',
    });
    await call('GET /api/v1/marketplace/templates', {});
    await call('GET /api/v1/marketplace/templates/:template_id', tmpl);
    const bought = await call('POST /api/v1/marketplace/templates/:template_id/licenses', tmpl, {
      organization_id: 'org_acme',
      license_type: 'seat_based',
      max_seats: 10,
      auto_update: true,
    });
    const lic = { org: 'org_acme', license_id: bought.body.id as string };
    expect(h.store.entitlements.get(lic.license_id)?.productId).toBe('tmpl_sales');
    const faceSeat = await call('POST /api/v1/organizations/:org/licenses/:license_id/seats', lic, {
      principal_id: 'user_xxx',
    });
    await call('POST /api/v1/organizations/:org/licenses/:license_id/seats/bulk', lic, {
      principal_ids: ['user_1', 'user_2'],
    });
    await call('GET /api/v1/organizations/:org/licenses/:license_id/seats', lic);
    await call('DELETE /api/v1/organizations/:org/licenses/:license_id/seats/:seat_id', {
      ...lic,
      seat_id: faceSeat.body.seat_id,
    });
    await call('PATCH /api/v1/organizations/:org/licenses/:license_id', lic, {
      auto_update: false,
    });
    await call('POST /api/v1/organizations/:org/licenses/:license_id/renew', lic, {
      period_months: 12,
    });
    await call('GET /api/v1/organizations/:org/licenses/:license_id/entitlements', lic);
    const dash = await call(
      'POST /api/v1/organizations/:org/templates/:template_id/install',
      { org: 'org_acme', ...tmpl },
      { name: 'My Sales Dashboard', variables: { company_name: 'Acme Corp' } },
    );
    expect(h.services.quotas.get(dash.body.dashboard_id).entitlementId).toBe(lic.license_id);
    await call('GET /api/v1/organizations/:org/installed-templates', { org: 'org_acme' });
    await call(
      'POST /api/v1/organizations/:org/dashboards/:dashboard_id/update-template',
      {
        org: 'org_acme',
        dashboard_id: dash.body.dashboard_id,
      },
      { version: '1.3.0' },
    );
    await call('GET /api/v1/organizations/:org/licenses/:license_id/usage', lic);
    await call('DELETE /api/v1/organizations/:org/dashboards/:dashboard_id', {
      org: 'org_acme',
      dashboard_id: dash.body.dashboard_id,
    });
    await call('GET /api/v1/organizations/:org/licenses/:license_id/permissions', {
      ...lic,
      principal_id: 'user_1',
      permission: 'use',
    });

    // Every route the document names was sent a request here.
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    expect(documented.filter((k) => !called.has(k))).toEqual([]);
  });

  it('refusals answer the envelope with a code the document lists for that route and status', async () => {
    const e = (
      await call(
        'POST /v1/entitlements',
        {},
        {
          ...seedEntitlement,
          policy_json: { type: 'concurrent', max_seats: 1 },
        },
      )
    ).body.entitlement_id;
    const lease = (subject: string, tenant = 'customer-tenant-id') => ({
      product_id: 'your-product-id',
      tenant_id: tenant,
      subject_type: 'user',
      subject_id: subject,
    });
    expect((await call('POST /v1/license/lease', {}, lease('a', 'nowhere'), null)).status).toBe(
      404,
    );
    // A refused lease is counted as a denial (usage reports), and nothing else is written.
    expect(h.store.db.prepare('SELECT kind, reason FROM lease_events').all()).toEqual([
      { kind: 'deny', reason: 'not_found' },
    ]);
    const before = h.snapshot();
    expect((await call('GET /v1/entitlements', {}, undefined, null)).body.error.code).toBe(
      'unauthorized',
    );
    expect(
      (await call('POST /v1/entitlements/:id/suspend', { id: e }, undefined, h.reader)).status,
    ).toBe(403);
    expect((await call('GET /v1/entitlements/:id', { id: 'ent_nope' })).status).toBe(404);
    expect((await call('GET /v1/entitlements', { status: 'sleepy' })).status).toBe(400);
    expect((await call('POST /v1/entitlements/:id/resume', { id: e })).status).toBe(409);
    expect(h.snapshot()).toEqual(before);
    const first = await call('POST /v1/license/lease', {}, lease('a'), null);
    expect(first.status).toBe(201);
    expect((await call('POST /v1/license/lease', {}, lease('b'), null)).body.error.code).toBe(
      'seats_exhausted',
    );
    await call('POST /v1/license/lease/release', {}, { lease_id: first.body.lease_id }, null);
    expect(
      (await call('POST /v1/license/lease/renew', {}, { lease_id: first.body.lease_id }, null)).body
        .error.code,
    ).toBe('lease_released');
  });

  it('a body the document refuses is refused by the server too, with nothing written', async () => {
    const op = operation('POST /v1/entitlements');
    const schema = op.requestBody.content['application/json'].schema;
    const before = h.snapshot();
    for (const bad of [
      { ...seedEntitlement, tenant_id: undefined },
      { ...seedEntitlement, policy_json: { type: 'galactic', max_seats: 1 } },
      { ...seedEntitlement, surplus: 1 },
      { ...seedEntitlement, starts_at: 12 },
      { ...seedEntitlement, tenant_id: 'has space' },
    ]) {
      expect(validate(doc, schema, bad), JSON.stringify(bad)).not.toEqual([]);
      const r = await h.req('POST', '/v1/entitlements', bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
      expect(validate(doc, op.responses['400'].content['application/json'].schema, r.body)).toEqual(
        [],
      );
    }
    expect(h.snapshot()).toEqual(before);
    // An answer the document does not describe fails: a field it lacks, a value of the wrong type.
    const entitlement = { $ref: '#/components/schemas/Entitlement' };
    const real = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body;
    expect(validate(doc, entitlement, real)).toEqual([]);
    expect(validate(doc, entitlement, { ...real, extra: 1 })).not.toEqual([]);
    expect(validate(doc, entitlement, { ...real, status: 'sleepy' })).not.toEqual([]);
    expect(validate(doc, entitlement, { ...real, created_at: 'yesterday' })).not.toEqual([]);
  });
});

/**
 * The Template Licensing face over HTTP (app.request, a real database): the catalogue, purchases
 * and their license types, the license routes (seats, auto_update, renew), the permission rule,
 * and what a tenant-scoped token sees. Each answer is checked with the rows it wrote.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../../../../test/helpers.ts';
import { createWorld, ent } from '../../../../test/sync/world.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

const TEMPLATE = 'tmpl_sales';
const ORG = 'org_acme';
const publish = (version = '1.2.0', id = TEMPLATE) =>
  h.req('PUT', `/api/v1/marketplace/templates/${id}`, {
    name: 'Sales Analytics Dashboard',
    description: 'Pipeline, revenue and win rates',
    version,
  });
const purchase = (body: Record<string, unknown>, id = TEMPLATE) =>
  h.req('POST', `/api/v1/marketplace/templates/${id}/licenses`, {
    organization_id: ORG,
    ...body,
  });
const stored = (id: string) => h.store.entitlements.get(id)!;
const lic = (id: string, rest = '') => `/api/v1/organizations/${ORG}/licenses/${id}${rest}`;

describe('the template catalogue', () => {
  it('publishes a template, lists it, shows it, and a new version replaces the current one', async () => {
    expect((await h.req('GET', '/api/v1/marketplace/templates')).body).toEqual({
      data: [],
      next_cursor: null,
    });
    const first = await publish();
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      id: TEMPLATE,
      name: 'Sales Analytics Dashboard',
      description: 'Pipeline, revenue and win rates',
      version: '1.2.0',
      created_at: '2024-01-15T10:30:00Z',
      updated_at: '2024-01-15T10:30:00Z',
    });
    h.clock.advance(60_000);
    const second = await publish('1.3.0');
    expect(second.body).toMatchObject({
      version: '1.3.0',
      created_at: '2024-01-15T10:30:00Z',
      updated_at: '2024-01-15T10:31:00Z',
    });
    const list = await h.req('GET', '/api/v1/marketplace/templates', undefined, h.reader);
    expect(list.body.data).toEqual([second.body]);
    expect((await h.req('GET', `/api/v1/marketplace/templates/${TEMPLATE}`)).body).toEqual(
      second.body,
    );
    const audit = h.store.audit.page(0, 100).filter((r) => r.action === 'template.publish');
    expect(audit.map((r) => JSON.parse(r.details))).toEqual([
      { name: 'Sales Analytics Dashboard', version_before: null, version: '1.2.0' },
      { name: 'Sales Analytics Dashboard', version_before: '1.2.0', version: '1.3.0' },
    ]);
  });

  it('answers 404 for a template it does not have, and refuses a bad publish with nothing written', async () => {
    const missing = await h.req('GET', '/api/v1/marketplace/templates/tmpl_nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({
      code: 'not_found',
      message: 'no template tmpl_nope in the marketplace',
    });
    const before = h.snapshot();
    for (const bad of [
      { name: 'x' },
      { name: 'x', version: '1.0 beta' },
      { name: '', version: '1.0' },
      { name: 'x', version: '1.0', surplus: 1 },
    ]) {
      const r = await h.req('PUT', `/api/v1/marketplace/templates/${TEMPLATE}`, bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
    expect(
      (
        await h.req(
          'PUT',
          `/api/v1/marketplace/templates/${TEMPLATE}`,
          {
            name: 'x',
            version: '1.0',
          },
          h.reader,
        )
      ).status,
    ).toBe(403);
    expect(h.snapshot()).toEqual(before);
  });
});

describe('purchase', () => {
  it('creates the entitlement and answers in the seed’s shape', async () => {
    await publish();
    const r = await purchase({ license_type: 'seat_based', max_seats: 10, auto_update: true });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      id: expect.stringMatching(/^ent_/),
      template_id: TEMPLATE,
      organization_id: ORG,
      license_type: 'seat_based',
      max_seats: 10,
      assigned_seats: 0,
      auto_update: true,
      valid_from: '2024-01-15T10:30:00Z',
      valid_until: '2025-01-15T10:30:00Z',
      status: 'active',
      max_dashboards: 1_000_000,
      current_dashboards: 0,
    });
    expect(stored(r.body.id)).toMatchObject({
      tenantId: ORG,
      productId: TEMPLATE,
      policy: { type: 'per_user', max_seats: 10, auto_update: true },
      startsAt: Date.parse('2024-01-15T10:30:00Z'),
      endsAt: Date.parse('2025-01-15T10:30:00Z'),
      status: 'active',
      source: 'manual',
    });
    // The /v1 face sees the same entitlement, auto_update in its policy.
    const v1 = await h.req('GET', `/v1/entitlements/${r.body.id}`);
    expect(v1.body.policy_json).toEqual({
      type: 'per_user',
      max_seats: 10,
      auto_update: true,
      quotas: { dashboards: 1_000_000 },
    });
  });

  it.each([
    [{ license_type: 'individual' }, { type: 'per_user', max_seats: 1 }, 'individual', 1],
    [
      { license_type: 'team', max_seats: 120 },
      { type: 'per_user', max_seats: 120 },
      'seat_based',
      120,
    ],
    [{ license_type: 'unlimited' }, { type: 'feature_based' }, 'unlimited', null],
    [
      { license_type: 'seat_based', max_seats: 5, period_months: 1 },
      { type: 'per_user', max_seats: 5 },
      'seat_based',
      5,
    ],
  ])('stores %j in the normal form', async (body, policy, word, seats) => {
    await publish();
    const r = await purchase(body);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ license_type: word, max_seats: seats, auto_update: false });
    expect(stored(r.body.id).policy).toEqual({
      ...policy,
      auto_update: false,
      quotas: { dashboards: 1_000_000 },
    });
    if ('period_months' in body) expect(r.body.valid_until).toBe('2024-02-15T10:30:00Z');
  });

  it('refuses bad purchases with the field named and nothing written', async () => {
    await publish();
    const before = h.snapshot();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ license_type: 'seat_based' }, 'max_seats'],
      [{ license_type: 'individual', max_seats: 3 }, 'max_seats'],
      [{ license_type: 'unlimited', max_seats: 3 }, 'max_seats'],
      [{ license_type: 'galactic' }, 'license_type'],
      [{ license_type: 'team', max_seats: 0 }, 'max_seats'],
      [{ license_type: 'team', max_seats: 3, auto_update: 'yes' }, 'auto_update'],
      [{ license_type: 'team', max_seats: 3, colour: 'red' }, '(root)'],
      [{ license_type: 'team', max_seats: 3, organization_id: 'has space' }, 'organization_id'],
    ];
    for (const [body, path] of cases) {
      const r = await purchase(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
      expect(r.body.error.details.issues[0].path, JSON.stringify(body)).toBe(path);
    }
    const unknown = await purchase({ license_type: 'individual' }, 'tmpl_nope');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toBe('no template tmpl_nope in the marketplace');
    expect(h.snapshot()).toEqual(before);
  });
});

describe('a license', () => {
  async function bought(
    body: Record<string, unknown> = { license_type: 'seat_based', max_seats: 3 },
  ) {
    await publish();
    return (await purchase(body)).body.id as string;
  }

  it('takes seats one by one and in bulk, lists and revokes them, as the /v1 seats do', async () => {
    const id = await bought();
    const one = await h.req('POST', lic(id, '/seats'), { principal_id: 'user_xxx' });
    expect(one.status).toBe(201);
    expect(one.body).toMatchObject({
      entitlement_id: id,
      subject_type: 'user',
      subject_id: 'user_xxx',
    });
    const bulk = await h.req('POST', lic(id, '/seats/bulk'), {
      principal_ids: ['user_1', 'user_2'],
    });
    expect(bulk.status).toBe(201);
    expect(bulk.body.assigned).toBe(2);
    const full = await h.req('POST', lic(id, '/seats'), { principal_id: 'user_3' });
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe('seats_exhausted');
    const list = await h.req('GET', lic(id, '/seats'));
    expect(list.body.data.map((s: any) => s.subject_id).sort()).toEqual([
      'user_1',
      'user_2',
      'user_xxx',
    ]);
    const del = await h.req('DELETE', lic(id, `/seats/${one.body.seat_id}`));
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ seat_id: one.body.seat_id, revoked: true });
    expect(h.store.leases.counters(id).seatsAssigned).toBe(2);
    expect(h.store.seats.get(one.body.seat_id)).toBeUndefined();
  });

  it('turns auto_update off (policy_json, audited) and renews by months', async () => {
    const id = await bought({
      license_type: 'seat_based',
      max_seats: 3,
      auto_update: true,
      max_dashboards: 5,
    });
    const off = await h.req('PATCH', lic(id), { auto_update: false });
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ id, auto_update: false, license_type: 'seat_based' });
    const policy = { type: 'per_user', max_seats: 3, quotas: { dashboards: 5 } };
    expect(stored(id).policy).toEqual({ ...policy, auto_update: false });
    const row = h.store.audit.page(0, 100).find((r) => r.action === 'entitlement.update')!;
    expect(JSON.parse(row.details)).toEqual({
      before: { policy_json: { ...policy, auto_update: true } },
      after: { policy_json: { ...policy, auto_update: false } },
    });
    const renewed = await h.req('POST', lic(id, '/renew'), { period_months: 12 });
    expect(renewed.status).toBe(200);
    expect(renewed.body.valid_until).toBe('2026-01-15T10:30:00Z');
    expect(stored(id).endsAt).toBe(Date.parse('2026-01-15T10:30:00Z'));
    const before = h.snapshot();
    expect((await h.req('PATCH', lic(id), { auto_update: 'no' })).status).toBe(400);
    expect((await h.req('PATCH', lic(id), {})).status).toBe(400);
    expect((await h.req('POST', lic(id, '/renew'), { period_months: 0 })).status).toBe(400);
    expect(h.snapshot()).toEqual(before);
  });

  it('is not found under another organization, and a tenant token sees its own organization only', async () => {
    const id = await bought();
    const other = `/api/v1/organizations/org_other/licenses/${id}/seats`;
    const r = await h.req('GET', other);
    expect(r.status).toBe(404);
    expect(r.body.error.message).toBe(`no license ${id} in organization org_other`);
    const mine = h.services.apiTokens.create(
      { name: 'acme', role: 'tenant_admin', tenantId: ORG },
      't',
    );
    const theirs = h.services.apiTokens.create(
      { name: 'other', role: 'tenant_admin', tenantId: 'org_other' },
      't',
    );
    expect(
      (await h.req('POST', lic(id, '/seats'), { principal_id: 'u1' }, mine.token)).status,
    ).toBe(201);
    const before = h.snapshot();
    const foreign = await h.req('POST', lic(id, '/seats'), { principal_id: 'u2' }, theirs.token);
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.message).toBe(`no license ${id} in organization ${ORG}`);
    // A license change spans tenants on /v1 (write, global): the same here.
    const patch = await h.req('PATCH', lic(id), { auto_update: true }, mine.token);
    expect(patch.status).toBe(403);
    expect(patch.body.error.code).toBe('forbidden');
    expect(h.snapshot()).toEqual(before);
  });
});

describe('a license is a template’s entitlement', () => {
  it('answers every license route for a /v1 entitlement of another product as missing, nothing written', async () => {
    await publish();
    const other = await h.req('POST', '/v1/entitlements', {
      tenant_id: ORG,
      product_id: 'cad-suite',
      policy_json: { type: 'per_user', max_seats: 3, quotas: { dashboards: 2 } },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2025-01-01T00:00:00Z',
    });
    expect(other.status).toBe(201);
    const id = other.body.entitlement_id as string;
    const seat = await h.req('POST', `/v1/entitlements/${id}/seats`, {
      subject_type: 'user',
      subject_id: 'u1',
    });
    expect(seat.status).toBe(201);
    const before = h.snapshot();
    for (const [method, path, body] of [
      ['GET', lic(id, '/seats'), undefined],
      ['POST', lic(id, '/seats'), { principal_id: 'u2' }],
      ['POST', lic(id, '/seats/bulk'), { principal_ids: ['u3'] }],
      ['DELETE', lic(id, `/seats/${seat.body.seat_id}`), undefined],
      ['PATCH', lic(id), { auto_update: false }],
      ['POST', lic(id, '/renew'), { period_months: 12 }],
      ['GET', lic(id, '/usage'), undefined],
      ['GET', lic(id, '/entitlements'), undefined],
      ['GET', lic(id, '/permissions?principal_id=u1&permission=use'), undefined],
    ] as const) {
      const r = await h.req(method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body.error).toMatchObject({
        code: 'not_found',
        message: `no license ${id} in organization ${ORG}`,
      });
    }
    expect(h.snapshot()).toEqual(before);
    expect(h.store.entitlements.get(id)!.policy).not.toHaveProperty('auto_update');
  });
});

describe('the permission check', () => {
  it('use = seat holder or organization admin; manage = organization admin', async () => {
    await publish();
    const id = (await purchase({ license_type: 'seat_based', max_seats: 3 })).body.id as string;
    await h.req('POST', lic(id, '/seats'), { principal_id: 'user_1' });
    const orgAdmin = h.services.apiTokens.create(
      { name: 'acme admin', role: 'tenant_admin', tenantId: ORG },
      't',
    ).record.id;
    const otherAdmin = h.services.apiTokens.create(
      { name: 'other admin', role: 'tenant_admin', tenantId: 'org_other' },
      't',
    ).record.id;
    const reader = h.services.apiTokens.create({ name: 'r', role: 'reader' }, 't').record.id;
    const check = async (principal: string, permission: string) =>
      (
        await h.req(
          'GET',
          lic(id, `/permissions?principal_id=${principal}&permission=${permission}`),
        )
      ).body;
    expect(await check('user_1', 'use')).toEqual({
      license_id: id,
      principal_id: 'user_1',
      permission: 'use',
      allowed: true,
      reason: 'seat_holder',
    });
    // Subjects are matched as seats match them: by canonical key.
    expect((await check('USER_1', 'use')).allowed).toBe(true);
    expect(await check('user_2', 'use')).toMatchObject({ allowed: false, reason: 'no_relation' });
    expect(await check('user_1', 'manage')).toMatchObject({
      allowed: false,
      reason: 'no_relation',
    });
    expect(await check(orgAdmin, 'use')).toMatchObject({
      allowed: true,
      reason: 'organization_admin',
    });
    expect(await check(orgAdmin, 'manage')).toMatchObject({
      allowed: true,
      reason: 'organization_admin',
    });
    expect(await check(otherAdmin, 'manage')).toMatchObject({ allowed: false });
    expect(await check(reader, 'manage')).toMatchObject({ allowed: false });
    const shortLived = h.services.apiTokens.create(
      { name: 'day', role: 'tenant_admin', tenantId: ORG, expiresInDays: 1 },
      't',
    ).record.id;
    expect(await check(shortLived, 'manage')).toMatchObject({ allowed: true });
    h.services.apiTokens.revoke(orgAdmin, 't');
    expect(await check(orgAdmin, 'manage')).toMatchObject({ allowed: false });
    h.clock.advance(2 * 86_400_000);
    expect(await check(shortLived, 'manage')).toMatchObject({ allowed: false });
    // An unlimited license is organization-wide.
    const wide = (await purchase({ license_type: 'unlimited' })).body.id as string;
    const w = await h.req('GET', lic(wide, '/permissions?principal_id=anyone&permission=use'));
    expect(w.body).toMatchObject({ allowed: true, reason: 'organization_wide' });
    const bad = await h.req('GET', lic(id, '/permissions?principal_id=user_1&permission=own'));
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.issues[0].path).toBe('permission');
  });
});

describe('template installs', () => {
  const install = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    h.req(
      'POST',
      `/api/v1/organizations/${ORG}/templates/${TEMPLATE}/install`,
      body,
      h.admin,
      headers,
    );
  const dashboardsOf = (license: string) =>
    h.services.quotas.list({ entitlementId: license }, undefined).items;

  it('records a dashboard with the template’s current version, lists it, and updates its version', async () => {
    await publish();
    const id = (await purchase({ license_type: 'seat_based', max_seats: 10, max_dashboards: 5 }))
      .body.id as string;
    const r = await install({
      name: 'My Sales Dashboard',
      variables: { company_name: 'Acme Corp', primary_color: '#6366f1' },
    });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      dashboard_id: expect.stringMatching(/^inst_/),
      name: 'My Sales Dashboard',
      template_id: TEMPLATE,
      template_version: '1.2.0',
      license_id: id,
      variables: { company_name: 'Acme Corp', primary_color: '#6366f1' },
      created_at: '2024-01-15T10:30:00Z',
      updated_at: '2024-01-15T10:30:00Z',
    });
    expect(dashboardsOf(id)).toMatchObject([
      {
        id: r.body.dashboard_id,
        quota: 'dashboards',
        name: 'My Sales Dashboard',
        version: '1.2.0',
        metadata: { template_id: TEMPLATE, variables: { company_name: 'Acme Corp' } },
      },
    ]);
    const list = await h.req('GET', `/api/v1/organizations/${ORG}/installed-templates`);
    expect(list.body).toEqual({ data: [r.body], next_cursor: null });
    h.clock.advance(1000);
    const up = await h.req(
      'POST',
      `/api/v1/organizations/${ORG}/dashboards/${r.body.dashboard_id}/update-template`,
      { version: '1.3.0' },
    );
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({
      template_version: '1.3.0',
      updated_at: '2024-01-15T10:30:01Z',
    });
    expect(h.services.quotas.get(r.body.dashboard_id).version).toBe('1.3.0');
    // The check and the license answer count it.
    const check = await h.req('GET', lic(id, '/entitlements'));
    expect(check.body).toEqual({
      can_install: true,
      remaining_dashboards: 4,
      remaining_seats: 10,
      reason: null,
    });
  });

  it('stops at the dashboards limit (quota_exhausted, nothing written) and honours an Idempotency-Key', async () => {
    await publish();
    const id = (await purchase({ license_type: 'individual', max_dashboards: 1 })).body
      .id as string;
    const first = await install({ name: 'One' }, { 'idempotency-key': 'k-1' });
    expect(first.status).toBe(201);
    const again = await install({ name: 'One' }, { 'idempotency-key': 'k-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    const before = h.snapshot();
    const full = await install({ name: 'Two' });
    expect(full.status).toBe(409);
    expect(full.body.error).toMatchObject({
      code: 'quota_exhausted',
      details: { entitlement_id: id, quota: 'dashboards', limit: 1, used: 1 },
      message: `${id} uses 1 of 1 dashboards; uninstall one (DELETE /api/v1/organizations/${ORG}/dashboards/{dashboard_id}) to install another`,
    });
    expect(h.snapshot()).toEqual(before);
    expect((await h.req('GET', lic(id, '/entitlements'))).body).toEqual({
      can_install: false,
      remaining_dashboards: 0,
      remaining_seats: 1,
      reason: 'quota_exhausted',
    });
  });

  it('answers a retried Idempotency-Key with the first dashboard after a later-ending purchase (the key is the organization’s)', async () => {
    await publish();
    const first = (
      await purchase({ license_type: 'unlimited', max_dashboards: 5, period_months: 1 })
    ).body.id as string;
    const made = await install({ name: 'One' }, { 'idempotency-key': 'k1' });
    expect(made.status).toBe(201);
    expect(made.body.license_id).toBe(first);
    // A second purchase ends later: a new install would draw on it first.
    const later = (await purchase({ license_type: 'unlimited', max_dashboards: 5 })).body
      .id as string;
    const before = h.snapshot();
    const again = await install({ name: 'One' }, { 'idempotency-key': 'k1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(made.body);
    expect(h.snapshot()).toEqual(before);
    expect(dashboardsOf(later)).toEqual([]);
    // The same key with another body is the conflict the core answers, still nothing written.
    const other = await install({ name: 'Two' }, { 'idempotency-key': 'k1' });
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({
      code: 'conflict',
      details: { installation_id: made.body.dashboard_id, idempotency_key: 'k1' },
    });
    expect(h.snapshot()).toEqual(before);
    expect((await install({ name: 'Two' })).body.license_id).toBe(later);
  });

  it('draws on the license that ends last, and a second license takes over when the first is full', async () => {
    await publish();
    const short = (
      await purchase({ license_type: 'unlimited', max_dashboards: 1, period_months: 1 })
    ).body.id as string;
    const long = (await purchase({ license_type: 'unlimited', max_dashboards: 1 })).body
      .id as string;
    expect((await install({ name: 'A' })).body.license_id).toBe(long);
    expect((await install({ name: 'B' })).body.license_id).toBe(short);
    expect((await install({ name: 'C' })).body.error.code).toBe('quota_exhausted');
    expect(dashboardsOf(long)).toHaveLength(1);
    expect(dashboardsOf(short)).toHaveLength(1);
  });

  it('refuses new dashboards in grace, keeps the existing ones listed, and renewing opens it again', async () => {
    await publish();
    const id = (await purchase({ license_type: 'seat_based', max_seats: 2, max_dashboards: 5 }))
      .body.id as string;
    const made = await install({ name: 'Before expiry' });
    h.clock.advance(367 * 86_400_000);
    const before = h.snapshot();
    const refused = await install({ name: 'In grace' });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { status: 'grace' },
    });
    const upd = await h.req(
      'POST',
      `/api/v1/organizations/${ORG}/dashboards/${made.body.dashboard_id}/update-template`,
      { version: '9.9.9' },
    );
    expect(upd.body.error.code).toBe('entitlement_inactive');
    expect(h.snapshot()).toEqual(before);
    const list = await h.req('GET', `/api/v1/organizations/${ORG}/installed-templates`);
    expect(list.body.data.map((d: any) => d.name)).toEqual(['Before expiry']);
    // /v1 check's word for the refusal: the status, not the error code.
    expect((await h.req('GET', lic(id, '/entitlements'))).body).toEqual({
      can_install: false,
      remaining_dashboards: 4,
      remaining_seats: 2,
      reason: 'expired',
    });
    expect((await h.req('POST', lic(id, '/renew'), { period_months: 12 })).body.status).toBe(
      'active',
    );
    expect((await install({ name: 'After renewal' })).status).toBe(201);
  });

  it('uninstalls a dashboard (the unit is free again, audited), as a full quota asks', async () => {
    await publish();
    const id = (await purchase({ license_type: 'individual', max_dashboards: 1 })).body
      .id as string;
    const made = await install({ name: 'One' });
    expect((await install({ name: 'Two' })).status).toBe(409);
    const path = `/api/v1/organizations/${ORG}/dashboards/${made.body.dashboard_id}`;
    // Same permission as the /v1 remove: a reader may not; nothing changes.
    const before = h.snapshot();
    const refused = await h.req('DELETE', path, undefined, h.reader);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    expect(h.snapshot()).toEqual(before);

    const gone = await h.req('DELETE', path);
    expect(gone.status).toBe(200);
    expect(gone.body).toEqual(made.body);
    expect(dashboardsOf(id)).toEqual([]);
    const audit = h.store.audit.page(0, 100).filter((r) => r.action === 'installation.remove');
    expect(audit.map((r) => [r.target_id, JSON.parse(r.details)])).toEqual([
      [id, { installation_id: made.body.dashboard_id, quota: 'dashboards', name: 'One' }],
    ]);
    const again = await h.req('DELETE', path);
    expect(again.status).toBe(404);
    expect(again.body.error.message).toBe(
      `no dashboard ${made.body.dashboard_id} in organization ${ORG}`,
    );
    expect((await install({ name: 'Two' })).status).toBe(201);
  });

  it('lists only template licenses’ dashboards: a /v1 `dashboards` installation on another product is not one', async () => {
    await publish();
    await purchase({ license_type: 'individual' });
    const mine = await install({ name: 'Mine' });
    const other = await h.req('POST', '/v1/entitlements', {
      tenant_id: ORG,
      product_id: 'cad-suite',
      policy_json: { type: 'feature_based', quotas: { dashboards: 2 } },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2025-01-01T00:00:00Z',
    });
    expect(other.status).toBe(201);
    const v1 = await h.req('POST', `/v1/entitlements/${other.body.entitlement_id}/installations`, {
      quota: 'dashboards',
      name: 'Not a template',
    });
    expect(v1.status).toBe(201);
    const list = await h.req('GET', `/api/v1/organizations/${ORG}/installed-templates`);
    expect(list.body).toEqual({ data: [mine.body], next_cursor: null });
    // Nor is it updated or uninstalled through the face: it stays, as /v1 made it.
    const before = h.snapshot();
    const path = `/api/v1/organizations/${ORG}/dashboards/${v1.body.installation_id}`;
    for (const [method, p, body] of [
      ['POST', `${path}/update-template`, { version: '9.9.9' }],
      ['DELETE', path, undefined],
    ] as const) {
      const r = await h.req(method, p, body);
      expect(r.status, `${method} ${p}`).toBe(404);
      expect(r.body.error.message).toBe(
        `no dashboard ${v1.body.installation_id} in organization ${ORG}`,
      );
    }
    expect(h.snapshot()).toEqual(before);
    expect(h.services.quotas.get(v1.body.installation_id).name).toBe('Not a template');
  });

  it('answers 404 for a template without a license, and another organization’s dashboards as missing', async () => {
    await publish();
    const none = await install({ name: 'x' });
    expect(none.status).toBe(404);
    expect(none.body.error.message).toBe(
      `no license for template ${TEMPLATE} in organization ${ORG}`,
    );
    await purchase({ license_type: 'individual' });
    const made = await install({ name: 'Mine' });
    const other = h.services.apiTokens.create(
      { name: 'o', role: 'tenant_admin', tenantId: 'org_other' },
      't',
    ).token;
    const before = h.snapshot();
    const path = `/dashboards/${made.body.dashboard_id}/update-template`;
    const foreign = await h.req('POST', `/api/v1/organizations/org_other${path}`, {
      version: '2.0.0',
    });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.message).toBe(
      `no dashboard ${made.body.dashboard_id} in organization org_other`,
    );
    const scoped = await h.req(
      'POST',
      `/api/v1/organizations/${ORG}${path}`,
      { version: '2.0.0' },
      other,
    );
    expect(scoped.status).toBe(404);
    expect(scoped.body.error.message).toBe(
      `no dashboard ${made.body.dashboard_id} in organization ${ORG}`,
    );
    // Nor uninstalled, through the other organization's path or a token scoped to it.
    for (const [p, token] of [
      [`/api/v1/organizations/org_other/dashboards/${made.body.dashboard_id}`, h.admin],
      [`/api/v1/organizations/${ORG}/dashboards/${made.body.dashboard_id}`, other],
    ] as const) {
      const r = await h.req('DELETE', p, undefined, token);
      expect(r.status, p).toBe(404);
      expect(r.body.error.code).toBe('not_found');
    }
    const list = await h.req(
      'GET',
      `/api/v1/organizations/${ORG}/installed-templates`,
      undefined,
      other,
    );
    expect(list.status).toBe(404);
    expect(
      (await h.req('GET', '/api/v1/organizations/org_other/installed-templates')).body.data,
    ).toEqual([]);
    for (const bad of [
      {},
      { name: '' },
      { name: 'x', variables: [1] },
      { name: 'x', version: 'a b' },
    ]) {
      const r = await install(bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
    expect(h.snapshot()).toEqual(before);
  });

  it('reports usage in the seed’s shape: seats, dashboards, views as lease grants', async () => {
    await publish();
    const id = (await purchase({ license_type: 'seat_based', max_seats: 10, max_dashboards: 5 }))
      .body.id as string;
    await h.req('POST', lic(id, '/seats/bulk'), { principal_ids: ['user_1', 'user_2', 'user_3'] });
    await install({ name: 'D1' });
    for (const user of ['user_1', 'user_2', 'user_1'])
      expect(
        (
          await h.req(
            'POST',
            '/v1/license/lease',
            { product_id: TEMPLATE, tenant_id: ORG, subject_type: 'user', subject_id: user },
            null,
          )
        ).status,
      ).toBe(201);
    const r = await h.req('GET', lic(id, '/usage'));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      license_id: id,
      template_name: 'Sales Analytics Dashboard',
      seats: { total: 10, assigned: 3, active_30d: 2 },
      dashboards: { total: 1, limit: 5 },
      activity: { views_30d: 2, unique_users_30d: 2 },
    });
  });
  it('answers can_install false (clock_suspect) on a bundle-managed license while the clock is behind, as the install refuses', async () => {
    const w = createWorld();
    try {
      const TPL = 'tmpl_bundled';
      const put = await w.h.req('PUT', `/api/v1/marketplace/templates/${TPL}`, {
        name: 'Bundled',
        version: '1.0.0',
      });
      expect(put.status).toBe(200);
      const policy = { type: 'concurrent', max_seats: 5, quotas: { dashboards: 3 } };
      await w.importFile(
        w.sign(1, { entitlements: [ent('ent_b', { product_id: TPL, policy_json: policy })] }),
      );
      const check = () => w.h.req('GET', `/api/v1/organizations/acme/licenses/ent_b/entitlements`);
      const installB = () =>
        w.h.req('POST', `/api/v1/organizations/acme/templates/${TPL}/install`, { name: 'D' });
      expect((await check()).body).toEqual({
        can_install: true,
        remaining_dashboards: 3,
        remaining_seats: 5,
        reason: null,
      });
      w.h.clock.advance(-2 * 3_600_000);
      const before = w.h.snapshot();
      expect((await check()).body).toEqual({
        can_install: false,
        remaining_dashboards: 3,
        remaining_seats: 5,
        reason: 'clock_suspect',
      });
      const refused = await installB();
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('clock_suspect');
      expect(w.h.snapshot()).toEqual(before);
      // /v1 check says the same word.
      expect((await w.h.req('GET', '/v1/entitlements/ent_b/check')).body.reason).toBe(
        'clock_suspect',
      );
    } finally {
      w.h.close();
    }
  });
});

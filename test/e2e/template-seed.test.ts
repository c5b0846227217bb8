// The Template Licensing seed ("Managing licenses and seat assignments for purchased templates"),
// every request in the seed's order, with the seed's paths and bodies (its placeholders tmpl_xxx,
// org_xxx, user_… used as the ids), against the REAL server started with the CLI (dist/cli.cjs
// serve) and spoken to with fetch. Each answer's fields are checked, and what the request did to
// the database is read beside the running server (read-only). Two kinds of request are not the
// seed's and are marked so: the admin publishing the template in the catalogue (the marketplace
// lists only what this server licenses), and two client leases before the usage report (so its
// activity counts something).
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servedDataDir, type Served } from './world.ts';

const TEMPLATE = 'tmpl_xxx';
const ORG = 'org_xxx';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const DAY_MS = 86_400_000;

let world: Served | undefined;
let dataDir: string;
let token: string;

/** One request as the seed writes it: JSON body, Bearer token; the answer's status and JSON. */
async function send(method: string, route: string, json?: unknown, auth: string | null = token) {
  const res = await fetch(`${world!.server.base}${route}`, {
    method,
    headers: {
      ...(auth !== null ? { Authorization: `Bearer ${auth}` } : {}),
      ...(json !== undefined ? { 'Content-Type': 'application/json' } : {}),
    },
    body: json === undefined ? null : JSON.stringify(json),
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** Reads the database beside the running server (WAL: a reader never blocks it). */
function query<T = Record<string, unknown>>(sql: string, ...args: unknown[]): T[] {
  const db = new Database(path.join(dataDir, 'license.db'), { readonly: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}
const auditActions = () =>
  query<{ action: string }>('SELECT action FROM audit_log ORDER BY seq').map((r) => r.action);

beforeAll(async () => {
  world = await servedDataDir('bpls-template-seed-');
  ({ dataDir, token } = world);
});

afterAll(async () => {
  await world?.close();
});

describe('the Template Licensing seed against the real server', () => {
  let licenseId: string;
  let seatXxx: string;
  let dashboardId: string;
  const lic = (rest = '') => `/api/v1/organizations/${ORG}/licenses/${licenseId}${rest}`;

  it('(not the seed’s) an admin publishes the template: PUT /api/v1/marketplace/templates/{id}', async () => {
    const r = await send('PUT', `/api/v1/marketplace/templates/${TEMPLATE}`, {
      name: 'Sales Analytics Dashboard',
      description: 'Pipeline, revenue and win rates',
      version: '1.2.0',
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ id: TEMPLATE, version: '1.2.0' });
    expect(auditActions()).toContain('template.publish');
  });

  it('Browse Marketplace: GET /api/v1/marketplace/templates', async () => {
    const r = await send('GET', '/api/v1/marketplace/templates');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      data: [
        {
          id: TEMPLATE,
          name: 'Sales Analytics Dashboard',
          description: 'Pipeline, revenue and win rates',
          version: '1.2.0',
          created_at: expect.stringMatching(RFC3339),
          updated_at: expect.stringMatching(RFC3339),
        },
      ],
      next_cursor: null,
    });
  });

  it('View Template Details: GET /api/v1/marketplace/templates/{template_id}', async () => {
    const r = await send('GET', `/api/v1/marketplace/templates/${TEMPLATE}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: TEMPLATE, name: 'Sales Analytics Dashboard' });
  });

  it('Purchase License: POST /api/v1/marketplace/templates/{template_id}/licenses', async () => {
    const before = Date.now();
    const r = await send('POST', `/api/v1/marketplace/templates/${TEMPLATE}/licenses`, {
      organization_id: 'org_xxx',
      license_type: 'seat_based',
      max_seats: 10,
      auto_update: true,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      template_id: TEMPLATE,
      organization_id: ORG,
      license_type: 'seat_based',
      max_seats: 10,
      assigned_seats: 0,
      auto_update: true,
      status: 'active',
    });
    expect(r.body.id).toMatch(/^ent_/);
    // valid_from is now, valid_until a year on (as the seed's example).
    const from = Date.parse(r.body.valid_from);
    expect(from).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(from).toBeLessThanOrEqual(Date.now());
    const until = new Date(from);
    until.setUTCFullYear(until.getUTCFullYear() + 1);
    expect(r.body.valid_until).toBe(until.toISOString().replace('.000Z', 'Z'));
    licenseId = r.body.id;
    const [row] = query<{ tenant_id: string; product_id: string; policy_json: string }>(
      'SELECT tenant_id, product_id, policy_json FROM entitlements WHERE id = ?',
      licenseId,
    );
    expect(row).toMatchObject({ tenant_id: ORG, product_id: TEMPLATE });
    expect(JSON.parse(row!.policy_json)).toEqual({
      type: 'per_user',
      max_seats: 10,
      auto_update: true,
      quotas: { dashboards: 1_000_000 },
    });
  });

  it('List Assigned Seats: GET /api/v1/organizations/{org}/licenses/{license_id}/seats', async () => {
    const r = await send('GET', lic('/seats'));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ data: [], next_cursor: null });
  });

  it('Assign a Seat: POST …/seats {"principal_id": "user_xxx"}', async () => {
    const r = await send('POST', lic('/seats'), { principal_id: 'user_xxx' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ subject_type: 'user', subject_id: 'user_xxx' });
    seatXxx = r.body.seat_id;
    expect(query('SELECT subject_id FROM seats WHERE id = ?', seatXxx)).toEqual([
      { subject_id: 'user_xxx' },
    ]);
  });

  it('Bulk Assign Seats: POST …/seats/bulk {"principal_ids": [...]}', async () => {
    const r = await send('POST', lic('/seats/bulk'), {
      principal_ids: ['user_1', 'user_2', 'user_3'],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.assigned).toBe(3);
    expect(
      query('SELECT subject_id FROM seats WHERE entitlement_id = ? ORDER BY subject_id', licenseId),
    ).toEqual([
      { subject_id: 'user_1' },
      { subject_id: 'user_2' },
      { subject_id: 'user_3' },
      { subject_id: 'user_xxx' },
    ]);
  });

  it('Revoke a Seat: DELETE …/seats/{seat_id}', async () => {
    const r = await send('DELETE', lic(`/seats/${seatXxx}`));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ seat_id: seatXxx, revoked: true });
    expect(query('SELECT id FROM seats WHERE id = ?', seatXxx)).toEqual([]);
  });

  it('Install Template: POST /api/v1/organizations/{org}/templates/{template_id}/install', async () => {
    const r = await send('POST', `/api/v1/organizations/${ORG}/templates/${TEMPLATE}/install`, {
      name: 'My Sales Dashboard',
      variables: {
        company_name: 'Acme Corp',
        primary_color: '#6366f1',
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      name: 'My Sales Dashboard',
      template_id: TEMPLATE,
      template_version: '1.2.0',
    });
    expect(r.body.dashboard_id).toMatch(/^inst_/);
    expect(r.body.created_at).toMatch(RFC3339);
    dashboardId = r.body.dashboard_id;
    const [row] = query<Record<string, any>>(
      'SELECT entitlement_id, quota, name, version, metadata FROM installations WHERE id = ?',
      dashboardId,
    );
    expect(row).toMatchObject({
      entitlement_id: licenseId,
      quota: 'dashboards',
      name: 'My Sales Dashboard',
      version: '1.2.0',
    });
    expect(JSON.parse(row!.metadata)).toEqual({
      template_id: TEMPLATE,
      variables: { company_name: 'Acme Corp', primary_color: '#6366f1' },
    });
  });

  it('List Installed Templates: GET /api/v1/organizations/{org}/installed-templates', async () => {
    const r = await send('GET', `/api/v1/organizations/${ORG}/installed-templates`);
    expect(r.status).toBe(200);
    expect(r.body.data).toHaveLength(1);
    expect(r.body.data[0]).toMatchObject({
      dashboard_id: dashboardId,
      name: 'My Sales Dashboard',
      template_id: TEMPLATE,
      template_version: '1.2.0',
      license_id: licenseId,
    });
  });

  it('Disable Auto-Update: PATCH /api/v1/organizations/{org}/licenses/{license_id}', async () => {
    const r = await send('PATCH', lic(), { auto_update: false });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ id: licenseId, auto_update: false, assigned_seats: 3 });
    const [row] = query<{ policy_json: string }>(
      'SELECT policy_json FROM entitlements WHERE id = ?',
      licenseId,
    );
    expect(JSON.parse(row!.policy_json).auto_update).toBe(false);
  });

  it('Manual Update: POST /api/v1/organizations/{org}/dashboards/{dashboard_id}/update-template', async () => {
    const r = await send(
      'POST',
      `/api/v1/organizations/${ORG}/dashboards/${dashboardId}/update-template`,
      { version: '1.3.0' },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ dashboard_id: dashboardId, template_version: '1.3.0' });
    expect(query('SELECT version FROM installations WHERE id = ?', dashboardId)).toEqual([
      { version: '1.3.0' },
    ]);
  });

  it('Check Entitlement: GET /api/v1/organizations/{org}/licenses/{license_id}/entitlements', async () => {
    const r = await send('GET', lic('/entitlements'));
    expect(r.status).toBe(200);
    // 10 seats, 3 held (user_xxx's revoked): 7 left, as the seed's example says.
    expect(r.body).toEqual({
      can_install: true,
      remaining_dashboards: 999_999,
      remaining_seats: 7,
      reason: null,
    });
  });

  it('Renewal: POST /api/v1/organizations/{org}/licenses/{license_id}/renew', async () => {
    const [before] = query<{ ends_at: number }>(
      'SELECT ends_at FROM entitlements WHERE id = ?',
      licenseId,
    );
    const r = await send('POST', lic('/renew'), { period_months: 12 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const [after] = query<{ ends_at: number }>(
      'SELECT ends_at FROM entitlements WHERE id = ?',
      licenseId,
    );
    // Twelve months on from the old end: between 365 and 366 days.
    expect(after!.ends_at - before!.ends_at).toBeGreaterThanOrEqual(365 * DAY_MS);
    expect(after!.ends_at - before!.ends_at).toBeLessThanOrEqual(366 * DAY_MS);
    expect(Date.parse(r.body.valid_until)).toBe(Math.floor(after!.ends_at / 1000) * 1000);
    expect(auditActions()).toContain('entitlement.renew');
  });

  it('License Usage: GET /api/v1/organizations/{org}/licenses/{license_id}/usage', async () => {
    // (Not the seed's) two seat holders' applications lease the template, so there is activity.
    for (const user of ['user_1', 'user_2']) {
      const l = await send(
        'POST',
        '/v1/license/lease',
        { product_id: TEMPLATE, tenant_id: ORG, subject_type: 'user', subject_id: user },
        null,
      );
      expect(l.status, JSON.stringify(l.body)).toBe(201);
    }
    const r = await send('GET', lic('/usage'));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      license_id: licenseId,
      template_name: 'Sales Analytics Dashboard',
      seats: { total: 10, assigned: 3, active_30d: 2 },
      dashboards: { total: 1, limit: 1_000_000 },
      activity: { views_30d: 2, unique_users_30d: 2 },
    });
  });

  it('Access checks: use = seat_holder + organization->admin_access (GET …/permissions)', async () => {
    const can = async (principal: string, permission: string) =>
      (
        await send(
          'GET',
          lic(
            `/permissions?principal_id=${encodeURIComponent(principal)}&permission=${permission}`,
          ),
        )
      ).body;
    expect(await can('user_1', 'use')).toEqual({
      license_id: licenseId,
      principal_id: 'user_1',
      permission: 'use',
      allowed: true,
      reason: 'seat_holder',
    });
    expect(await can('user_xxx', 'use')).toMatchObject({ allowed: false });
    expect(await can('user_1', 'manage')).toMatchObject({ allowed: false });
    // An organization admin: a tenant_admin API token of org_xxx, named by its id.
    const made = await send('POST', '/v1/tokens', {
      name: 'org_xxx admin',
      role: 'tenant_admin',
      tenant_id: ORG,
    });
    expect(made.status).toBe(201);
    expect(await can(made.body.token_id, 'manage')).toMatchObject({
      allowed: true,
      reason: 'organization_admin',
    });
    // That token works on its own organization's paths, and sees no other organization's.
    expect((await send('GET', lic('/seats'), undefined, made.body.token)).status).toBe(200);
    const other = await send(
      'GET',
      `/api/v1/organizations/org_other/installed-templates`,
      undefined,
      made.body.token,
    );
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe('not_found');
  });
});

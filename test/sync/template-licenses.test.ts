// A template license provisioned by a vendor bundle: auto_update and the dashboards quota travel
// in policy_json, the Template Licensing face reports and installs against them, and the license
// stays the vendor's (a local PATCH is refused, nothing changed).
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';

let w: World;
afterEach(() => w?.h.close());

const LIC = '/api/v1/organizations/acme/licenses/ent_t';

describe('a bundle provisions a template license', () => {
  it('carries auto_update and max_dashboards; the face installs up to the limit; PATCH is the vendor’s', async () => {
    w = createWorld();
    const policy_json = {
      type: 'per_user',
      max_seats: 5,
      auto_update: true,
      quotas: { dashboards: 2 },
    };
    await w.importFile(
      w.sign(1, { entitlements: [ent('ent_t', { product_id: 'tmpl_sales', policy_json })] }),
    );
    expect(w.h.store.entitlements.get('ent_t')!.policy).toEqual(policy_json);
    await w.h.req('PUT', '/api/v1/marketplace/templates/tmpl_sales', {
      name: 'Sales',
      version: '2.0.0',
    });
    const install = (name: string) =>
      w.h.req('POST', '/api/v1/organizations/acme/templates/tmpl_sales/install', { name });
    expect((await install('a')).body).toMatchObject({
      license_id: 'ent_t',
      template_version: '2.0.0',
    });
    expect((await install('b')).status).toBe(201);
    expect((await install('c')).body.error.code).toBe('quota_exhausted');
    expect((await w.h.req('GET', `${LIC}/entitlements`)).body).toEqual({
      can_install: false,
      remaining_dashboards: 0,
      remaining_seats: 5,
      reason: 'quota_exhausted',
    });
    const before = w.h.snapshot();
    const patch = await w.h.req('PATCH', LIC, { auto_update: false });
    expect(patch.status).toBe(409);
    expect(patch.body.error.code).toBe('managed_by_bundle');
    expect(w.h.snapshot()).toEqual(before);
  });
});

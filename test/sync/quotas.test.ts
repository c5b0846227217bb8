// Quotas and BPSYNC/1: a vendor bundle sets policy_json.quotas (and lowers it later without
// deleting an installation), a bad quota refuses the bundle, and exports carry the use per quota.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { verifyExport } from '../../src/sync/vendor.ts';

let w: World;
afterEach(() => w?.h.close());

const policy = (quotas: Record<string, unknown>) => ({
  policy_json: { type: 'concurrent', max_seats: 5, quotas },
});
const install = (id: string, name: string) =>
  w.h.req('POST', `/v1/entitlements/${id}/installations`, { quota: 'dashboards', name });
const rows = () =>
  w.h.store.db.prepare('SELECT entitlement_id, name FROM installations ORDER BY seq').all();

describe('a bundle sets quotas', () => {
  it('imports policy_json.quotas, installs up to the limit, and a later bundle lowering it keeps every installation', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_q', policy({ dashboards: 2 }))] }));
    expect(w.h.store.entitlements.get('ent_q')!.policy.quotas).toEqual({ dashboards: 2 });
    expect((await install('ent_q', 'a')).status).toBe(201);
    expect((await install('ent_q', 'b')).status).toBe(201);
    const third = await install('ent_q', 'c');
    expect(third.status).toBe(409);
    expect(third.body.error.code).toBe('quota_exhausted');
    expect(rows()).toEqual([
      { entitlement_id: 'ent_q', name: 'a' },
      { entitlement_id: 'ent_q', name: 'b' },
    ]);

    await w.importFile(
      w.sign(2, { entitlements: [ent('ent_q', { ...policy({ dashboards: 1 }), rev: 2 })] }),
    );
    expect(rows()).toHaveLength(2);
    expect((await w.h.req('GET', '/v1/entitlements/ent_q/check')).body.quotas).toEqual({
      dashboards: { limit: 1, used: 2, remaining: 0 },
    });
    expect((await install('ent_q', 'c')).body.error.code).toBe('quota_exhausted');
  });

  it.each([
    ['a quota name that is no slug', { 'Big Dashboards': 2 }],
    ['a negative limit', { dashboards: -1 }],
    ['a limit that is no whole number', { dashboards: 2.5 }],
  ])('refuses a bundle with %s, changing nothing', async (_, quotas) => {
    w = createWorld();
    await w.expectRefused(
      w.sign(1, { entitlements: [ent('ent_q', policy(quotas))] }),
      'malformed',
      /quotas/,
    );
    expect(w.h.store.entitlements.get('ent_q')).toBeUndefined();
  });
});

describe('a clock set back', () => {
  it('refuses new installations and changes on bundle-managed entitlements (503 clock_suspect), not on manual ones', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_q', policy({ dashboards: 3 }))] }));
    const first = (await install('ent_q', 'a')).body.installation_id as string;
    const manual = (
      await w.h.req('POST', '/v1/entitlements', {
        tenant_id: 'acme',
        product_id: 'bi',
        policy_json: { type: 'feature_based', quotas: { dashboards: 3 } },
        starts_at: '2024-01-01T00:00:00Z',
        ends_at: '2030-01-01T00:00:00Z',
      })
    ).body.entitlement_id as string;
    // Three hours behind the bundle's signed time: past the hour's tolerance.
    w.h.clock.set('2025-06-01T09:00:00Z');
    const before = w.h.snapshot();
    const r = await install('ent_q', 'b');
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('clock_suspect');
    expect(r.body.error.message).toContain('new installations and changes on ent_q');
    const v = await w.h.req('PATCH', `/v1/installations/${first}`, { version: '2' });
    expect(v.body.error.code).toBe('clock_suspect');
    expect(w.h.snapshot()).toEqual(before);
    // Reading and removing stay open; the admin's own entitlements are not the vendor's terms.
    expect((await w.h.req('GET', `/v1/installations/${first}`)).status).toBe(200);
    expect((await install(manual, 'm')).status).toBe(201);
    w.h.clock.set('2025-06-01T12:30:00Z');
    expect((await install('ent_q', 'b')).status).toBe(201);
    expect(rows()).toHaveLength(3);
  });
});

describe('exports count installations', () => {
  it('carries one quota_usage record per entitlement and quota in use, which the vendor’s check accepts', async () => {
    w = createWorld();
    await w.importFile(
      w.sign(1, {
        entitlements: [
          ent('ent_q', policy({ dashboards: 3, reports: 2 })),
          ent('ent_r', policy({ dashboards: 1 })),
        ],
      }),
    );
    await install('ent_q', 'a');
    await install('ent_q', 'b');
    await w.h.req('POST', '/v1/entitlements/ent_q/installations', { quota: 'reports', name: 'r' });
    await install('ent_r', 'c');
    // A quota the policy no longer names still counts, with no limit.
    await w.importFile(
      w.sign(2, { entitlements: [ent('ent_r', { ...policy({ widgets: 1 }), rev: 2 })] }),
    );

    const r = w.h.services.sync.exportTo({ outDir: join(w.h.dir, 'outbox'), actor: 'test' });
    const text = readFileSync(r.file, 'utf8');
    const recs = text
      .slice(text.indexOf('\n', 9) + 1)
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.filter((x) => x.op === 'quota_usage')).toEqual([
      { op: 'quota_usage', entitlement_id: 'ent_q', quota: 'dashboards', used: 2, limit: 3 },
      { op: 'quota_usage', entitlement_id: 'ent_q', quota: 'reports', used: 1, limit: 2 },
      { op: 'quota_usage', entitlement_id: 'ent_r', quota: 'dashboards', used: 1, limit: null },
    ]);
    const summary = await verifyExport(r.file, w.h.info.public_key);
    expect(summary.ops).toMatchObject({ quota_usage: 3 });
  });
});

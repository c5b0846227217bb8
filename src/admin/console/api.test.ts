/**
 * Every API call the admin console makes exists in the app, with its method: the console's own
 * client (./api.ts) talks to the real app in process, every call it has is made, and each request
 * it sent must match a route the app registers (method and path pattern) and be answered. The
 * bundled script (what the page inlines) holds no path that was not among them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEED_NOW, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { createWorld, ent, type World } from '../../../test/sync/world.ts';
import { createApi, parseUsageCsv, type Api } from './api.ts';
import SCRIPT from './main.ts?script';

// A server with a pinned vendor key (the sync calls import a signed bundle), at the seed's date.
let w: World;
let h: Harness;
beforeEach(() => {
  w = createWorld({ now: SEED_NOW });
  h = w.h;
});
afterEach(() => h.close());

/** A route's path pattern (`:id` a segment) as a regular expression over a path without query. */
const pattern = (path: string) =>
  new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:\w+/g, '[^/]+')}$`);

describe('the admin console', () => {
  it('calls only routes the app has, with their methods, and every call is answered', async () => {
    const sent: Array<{ method: string; path: string; status: number }> = [];
    const api = createApi(
      () => h.admin,
      async (path, init) => {
        const res = await h.app.request(path, init);
        sent.push({ method: init.method ?? 'GET', path, status: res.status });
        return res;
      },
    );
    const made = await h.req('POST', '/v1/entitlements', {
      ...seedEntitlement,
      policy_json: { type: 'per_user', max_seats: 3, seat_assignment: 'manual' },
    });
    const id = made.body.entitlement_id as string;

    // Every call of the client, in an order where each finds what it acts on.
    let other = '';
    let tokenId = '';
    const quoted = (
      await h.req('POST', '/v1/entitlements', {
        ...seedEntitlement,
        policy_json: { type: 'feature_based', quotas: { dashboards: 2 } },
      })
    ).body.entitlement_id as string;
    const installed = await h.req('POST', `/v1/entitlements/${quoted}/installations`, {
      quota: 'dashboards',
      name: 'Sales',
    });
    const bundle = readFileSync(w.sign(1, { entitlements: [ent('ent_Bundle_A')] }));
    const calls: { [K in keyof Api]: () => Promise<unknown> } = {
      whoami: async () => {
        const me = await api.whoami();
        expect(me).toMatchObject({ name: 'test admin', role: 'admin', tenant_id: null });
        expect(me.permissions).toContain('write');
        expect(me.server_time).toBe('2024-01-15T10:30:00Z');
        return me;
      },
      health: async () => expect(await api.health()).toBe('ready'),
      entitlements: async () => {
        const page = await api.entitlements({ tenant_id: 'customer-tenant-id', id_prefix: id });
        expect(page.data.map((e) => e.entitlement_id)).toEqual([id]);
        return page;
      },
      createEntitlement: async () => {
        const made = await api.createEntitlement({ ...seedEntitlement, tenant_id: 'other' });
        other = made.entitlement_id;
        return made;
      },
      updateEntitlement: async () => {
        const e = await api.updateEntitlement(other, { ends_at: '2025-06-30T00:00:00Z' });
        expect(e.ends_at).toBe('2025-06-30T00:00:00Z');
        return e;
      },
      entitlement: () => api.entitlement(id),
      usage: () => api.usage(id),
      assignSeat: async () => {
        const seat = await api.assignSeat(id, 'user', 'alice');
        const lease = await h.req('POST', '/v1/license/lease', {
          product_id: 'your-product-id',
          tenant_id: 'customer-tenant-id',
          subject_type: 'user',
          subject_id: 'alice',
        });
        expect(lease.status).toBe(201);
        return seat;
      },
      assignSeats: () => api.assignSeats(id, 'user', ['bob', 'carol']),
      usageDays: async () => {
        const days = await api.usageDays(id);
        expect(days).toEqual([{ date: '2024-01-15', grants: 1, denials: 0, peak: 1 }]);
        return days;
      },
      leases: () => api.leases(id),
      seats: () => api.seats(id),
      lifecycle: async () => {
        expect((await api.lifecycle(id, 'suspend')).status).toBe('suspended');
        await api.lifecycle(id, 'resume');
        return expect((await api.lifecycle(other, 'revoke')).status).toBe('revoked');
      },
      renew: async () => {
        const before = (await api.entitlement(id)).ends_at;
        const renewed = await api.renew(id, 12);
        expect(renewed.ends_at > before).toBe(true);
        return renewed;
      },
      syncStatus: () => api.syncStatus(),
      syncImport: async () => {
        const dry = await api.syncImport(new Uint8Array(bundle).buffer, true);
        expect(dry).toMatchObject({ status: 'dry_run', diff: { added: ['ent_Bundle_A'] } });
        expect(h.services.entitlements.list({ idPrefix: 'ent_Bundle' }).items).toEqual([]);
        const r = await api.syncImport(new Uint8Array(bundle).buffer, false);
        expect(r).toMatchObject({ status: 'applied', added: 1 });
        return r;
      },
      syncExport: async () => {
        const r = await api.syncExport();
        expect(r.name).toMatch(/\.bpsync$/);
        expect(r.blob.size).toBeGreaterThan(100);
        return r;
      },
      tokens: () => api.tokens(),
      createToken: async () => {
        const made = await api.createToken({ name: 'ops', role: 'reader' });
        expect(made.token).toMatch(/^bpls_/);
        tokenId = made.token_id;
        return made;
      },
      revokeToken: async () => expect((await api.revokeToken(tokenId)).status).toBe('revoked'),
      audit: async () => {
        const head = (await api.audit(1)).head.seq;
        return api.audit(20, Math.max(0, head - 20));
      },
      revokeLease: async () => {
        const leases = await api.leases(id);
        expect(leases.data).toHaveLength(1);
        return api.revokeLease(leases.data[0]!.lease_id);
      },
      installations: async () => {
        const list = await api.installations(quoted);
        expect(list.data.map((i) => i.name)).toEqual(['Sales']);
        expect((await api.entitlement(quoted)).quotas).toEqual({
          dashboards: { limit: 2, used: 1, remaining: 1 },
        });
        return list;
      },
      removeInstallation: () => api.removeInstallation(quoted, installed.body.installation_id),
      revokeSeat: async () => {
        const seats = await api.seats(id);
        expect(seats.data.map((s) => s.subject_id).sort()).toEqual(['alice', 'bob', 'carol']);
        const alice = seats.data.find((s) => s.subject_id === 'alice')!;
        return api.revokeSeat(id, alice.seat_id);
      },
    };
    // A call added to the client and not here fails the test: each one is checked.
    expect(Object.keys(calls).sort()).toEqual(Object.keys(api).sort());
    for (const call of Object.values(calls)) await call();

    const routes = h.app.routes.map((r) => ({ method: r.method, re: pattern(r.path) }));
    for (const s of sent) {
      const path = s.path.split('?')[0]!;
      expect(
        routes.some((r) => r.method === s.method && r.re.test(path)),
        `${s.method} ${s.path}`,
      ).toBe(true);
      expect(s.status, `${s.method} ${s.path}`).toBeLessThan(300);
    }
    expect(new Set(sent.map((s) => s.method))).toEqual(new Set(['GET', 'POST', 'PATCH', 'DELETE']));

    // What the calls changed is in the database: the seat is gone, the lease revoked.
    const db = h.store.db;
    expect(
      db.prepare('SELECT subject_id FROM seats WHERE entitlement_id = ? ORDER BY 1').all(id),
    ).toEqual([{ subject_id: 'bob' }, { subject_id: 'carol' }]);
    expect(
      db
        .prepare("SELECT state FROM leases WHERE entitlement_id = ? AND subject_id = 'alice'")
        .get(id),
    ).toEqual({ state: 'revoked' });
    expect(db.prepare('SELECT count(*) AS n FROM installations').get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT status FROM entitlements WHERE id = ?').get(other)).toEqual({
      status: 'revoked',
    });
    expect(db.prepare("SELECT source FROM entitlements WHERE id = 'ent_Bundle_A'").get()).toEqual({
      source: 'bundle',
    });
    expect(db.prepare('SELECT revoked_at FROM api_tokens WHERE id = ?').get(tokenId)).not.toEqual({
      revoked_at: null,
    });

    // The bundled script holds no path the calls above did not send.
    const inScript = SCRIPT.match(/\/v1\/[A-Za-z0-9_./?=&-]*/g) ?? [];
    expect(inScript.length).toBeGreaterThanOrEqual(8);
    for (const p of inScript)
      expect(
        sent.some((s) => s.path.startsWith(p)),
        `${p} in the bundled script`,
      ).toBe(true);
  });

  it('reads the daily usage CSV by its header, so quota columns after the lease ones change nothing', () => {
    const csv = [
      'date,entitlement_id,tenant_id,product_id,grants,renewals,releases,denials,peak_concurrent,unique_subjects,quota_dashboards_installed,quota_dashboards_removed,quota_dashboards_in_use,quota_dashboards_limit',
      '2024-01-15,ent_a,"acme, inc",bi,4,0,0,2,3,2,1,0,1,5',
      '',
    ].join('\r\n');
    expect(parseUsageCsv(csv)).toEqual([{ date: '2024-01-15', grants: 4, denials: 2, peak: 3 }]);
  });

  it('writes paths and calls fetch in api.ts only', () => {
    const dir = import.meta.dirname;
    for (const f of readdirSync(dir)) {
      if (f === 'api.ts' || f.endsWith('.test.ts')) continue;
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text, f).not.toMatch(/\/v1\//);
      // session.ts hands the browser's fetch to the client, and calls it nowhere else.
      expect(text.match(/\bfetch\(/g)?.length ?? 0, f).toBe(f === 'session.ts' ? 1 : 0);
    }
  });
});

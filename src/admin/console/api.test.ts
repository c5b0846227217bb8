/**
 * Every API call the admin console makes exists in the app, with its method: the console's own
 * client (./api.ts) talks to the real app in process, every call it has is made, and each request
 * it sent must match a route the app registers (method and path pattern) and be answered. The
 * bundled script (what the page inlines) holds no path that was not among them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { createApi, type Api } from './api.ts';
import SCRIPT from './main.ts?script';

let h: Harness;
beforeEach(() => {
  h = createHarness();
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
    const calls: { [K in keyof Api]: () => Promise<unknown> } = {
      entitlements: () => api.entitlements('customer-tenant-id'),
      entitlement: () => api.entitlement(id),
      usage: () => api.usage(id),
      assignSeat: async () => {
        const seat = await api.assignSeat(id, 'user_alice');
        const lease = await h.req('POST', '/v1/license/lease', {
          product_id: 'your-product-id',
          tenant_id: 'customer-tenant-id',
          subject_type: 'user',
          subject_id: 'user_alice',
        });
        expect(lease.status).toBe(201);
        return seat;
      },
      leases: () => api.leases(id),
      seats: () => api.seats(id),
      lifecycle: async () => {
        expect((await api.lifecycle(id, 'suspend')).status).toBe('suspended');
        return api.lifecycle(id, 'resume');
      },
      renew: async () => {
        const before = (await api.entitlement(id)).ends_at;
        const renewed = await api.renew(id, 12);
        expect(renewed.ends_at > before).toBe(true);
        return renewed;
      },
      syncStatus: () => api.syncStatus(),
      audit: async () => {
        const head = (await api.audit(1)).head.seq;
        return api.audit(20, Math.max(0, head - 20));
      },
      revokeLease: async () => {
        const leases = await api.leases(id);
        expect(leases.data).toHaveLength(1);
        return api.revokeLease(leases.data[0]!.lease_id);
      },
      revokeSeat: async () => {
        const seats = await api.seats(id);
        expect(seats.data.map((s) => s.subject_id)).toEqual(['user_alice']);
        return api.revokeSeat(id, seats.data[0]!.seat_id);
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
    expect(new Set(sent.map((s) => s.method))).toEqual(new Set(['GET', 'POST', 'DELETE']));

    // What the calls changed is in the database: the seat is gone, the lease revoked.
    const db = h.store.db;
    expect(db.prepare('SELECT count(*) AS n FROM seats WHERE entitlement_id = ?').get(id)).toEqual({
      n: 0,
    });
    expect(
      db
        .prepare("SELECT state FROM leases WHERE entitlement_id = ? AND subject_id = 'user_alice'")
        .get(id),
    ).toEqual({ state: 'revoked' });

    // The bundled script holds no path the calls above did not send.
    const inScript = SCRIPT.match(/\/v1\/[A-Za-z0-9_./?=&-]*/g) ?? [];
    expect(inScript.length).toBeGreaterThanOrEqual(8);
    for (const p of inScript)
      expect(
        sent.some((s) => s.path.startsWith(p)),
        `${p} in the bundled script`,
      ).toBe(true);
  });

  it('writes paths and calls fetch in api.ts only', () => {
    const dir = import.meta.dirname;
    for (const f of readdirSync(dir)) {
      if (f === 'api.ts' || f.endsWith('.test.ts')) continue;
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text, f).not.toMatch(/\/v1\//);
      // main.ts hands the browser's fetch to the client, and calls it nowhere else.
      expect(text.match(/\bfetch\(/g)?.length ?? 0, f).toBe(f === 'main.ts' ? 1 : 0);
    }
  });
});

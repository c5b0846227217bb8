import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';
import { createApp } from '../../app.ts';
import { createLogger } from '../../log.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

describe('health and metrics', () => {
  it('answers liveness and readiness without a token', async () => {
    expect((await h.req('GET', '/healthz', undefined, null)).body).toEqual({ status: 'ok' });
    expect((await h.req('GET', '/readyz', undefined, null)).body).toEqual({ status: 'ready' });
  });

  it('exposes request counts and lease totals in Prometheus text, with no tenant or subject names', async () => {
    await h.req('POST', '/v1/entitlements', { ...seedEntitlement, tenant_id: 'secret-customer' });
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        product_id: 'your-product-id',
        tenant_id: 'secret-customer',
        subject_type: 'user',
        subject_id: 'alice',
      },
      null,
    );
    await h.req('GET', '/nope', undefined, null);
    const r = await h.req('GET', '/metrics', undefined, null);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain; version=0.0.4');
    expect(r.text).toContain('bpls_http_requests_total{method="POST",status="201"} 2');
    expect(r.text).toContain('bpls_http_requests_total{method="GET",status="404"} 1');
    expect(r.text).toContain('\nbpls_leases_active 1\n');
    expect(r.text).toContain('\nbpls_entitlements 1\n');
    expect(r.text).toContain('\nbpls_clock_suspect 0\n');
    expect(r.text).toMatch(/bpls_http_request_duration_seconds_count \d+/);
    expect(r.text).not.toContain('secret-customer');
    expect(r.text).not.toContain('alice');
  });
});

describe('readiness follows writability', () => {
  it('a write the database refuses (SQLite query_only: SQLITE_READONLY; PostgreSQL a read-only session, as on a standby: 25006) answers 503 storage_unavailable, once in the log; /readyz and /metrics follow; a committing probe ends it', async () => {
    // The database itself refuses every write on the serving connection while this is on.
    const refuseWrites = (on: boolean) => {
      if (h.store.kind === 'sqlite') h.store.db.pragma(`query_only = ${on ? 'ON' : 'OFF'}`);
      else h.store.db.exec(`SET SESSION default_transaction_read_only = ${on ? 'on' : 'off'}`);
    };
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({
      write: (t) =>
        lines.push(
          ...t
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        ),
    });
    const app = createApp({
      services: h.services,
      store: h.store,
      clock: h.clock,
      info: h.info,
      log,
    });
    const ask = async (method: string, path: string, body?: unknown) => {
      const res = await app.request(path, {
        method,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${h.admin}` },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return {
        status: res.status,
        text: await res.text(),
        retryAfter: res.headers.get('retry-after'),
      };
    };
    const created = await ask('POST', '/v1/entitlements', seedEntitlement);
    expect(created.status, created.text).toBe(201);
    const grant = (s: string) =>
      ask('POST', '/v1/license/lease', {
        product_id: 'your-product-id',
        tenant_id: 'customer-tenant-id',
        subject_type: 'user',
        subject_id: s,
      });
    expect((await grant('alice')).status).toBe(201);
    const before = h.snapshot();

    refuseWrites(true);
    for (const s of ['bob', 'carol', 'dave']) {
      const r = await grant(s);
      expect(r.status).toBe(503);
      expect(JSON.parse(r.text).error).toMatchObject({ code: 'storage_unavailable' });
      expect(r.retryAfter).toBe('30');
    }
    expect(h.snapshot()).toEqual(before);
    expect((await ask('GET', '/v1/entitlements')).status).toBe(200);
    expect(await ask('GET', '/readyz')).toMatchObject({
      status: 503,
      text: '{"status":"storage_unavailable"}',
    });
    expect((await ask('GET', '/metrics')).text).toMatch(/^bpls_storage_writable 0$/m);
    // The probe is a real write: it fails as long as writes do.
    await new Promise((r) => setTimeout(r, 300));
    expect((await ask('GET', '/readyz')).status).toBe(503);
    expect(
      h.store.db
        .prepare("SELECT count(*) FROM server_state WHERE key = 'storage_probe'")
        .pluck()
        .get(),
    ).toBe(0);

    refuseWrites(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(await ask('GET', '/readyz')).toMatchObject({ status: 200, text: '{"status":"ready"}' });
    expect(
      h.store.db
        .prepare("SELECT count(*) FROM server_state WHERE key = 'storage_probe'")
        .pluck()
        .get(),
    ).toBe(1);
    expect((await ask('GET', '/metrics')).text).toMatch(/^bpls_storage_writable 1$/m);
    expect((await grant('erin')).status).toBe(201);
    const notes = lines.filter((l) => l.msg !== 'request');
    expect(notes).toEqual([
      expect.objectContaining({
        level: 'warn',
        code: 'storage_unavailable',
        cause: h.store.kind === 'sqlite' ? 'SQLITE_READONLY' : '25006',
      }),
      expect.objectContaining({ level: 'info', msg: 'storage writable again', refused_writes: 3 }),
    ]);
  });
});

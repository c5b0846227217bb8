import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../../../test/helpers.ts';

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
    await h.req('POST', '/v1/license/lease', { product_id: 'your-product-id', tenant_id: 'secret-customer', subject_type: 'user', subject_id: 'alice' }, null);
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

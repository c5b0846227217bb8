/**
 * The shared security tests: every admin route the app registers refuses every bad credential, and
 * every route with a body refuses every kind of bad input, with the envelope and no change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, seedEntitlement, type Harness } from '../helpers.ts';

// The client lease API needs no token (the lease id is the proof of possession); keys are public.
const PUBLIC_ROUTES = new Set([
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

let h: Harness;
let entId: string;
let revoked: string;
let expired: string;

beforeAll(async () => {
  h = createHarness();
  entId = (await h.req('POST', '/v1/entitlements', seedEntitlement)).body.entitlement_id;
  const r = h.services.apiTokens.create({ name: 'gone', role: 'admin' }, 'test');
  h.services.apiTokens.revoke(r.record.id, 'test');
  revoked = r.token;
  expired = h.services.apiTokens.create(
    { name: 'old', role: 'admin', expiresInDays: 1 },
    'test',
  ).token;
  h.clock.advance(2 * 86_400_000);
});
afterAll(() => h.close());

/** Every route the app has, with its :params filled in. */
function adminRoutes(): Array<[string, string]> {
  const seen = new Set<string>();
  const out: Array<[string, string]> = [];
  for (const r of h.app.routes) {
    if (r.method === 'ALL') continue;
    const key = `${r.method} ${r.path}`;
    if (PUBLIC_ROUTES.has(key) || seen.has(key)) continue;
    seen.add(key);
    out.push([r.method, r.path.replace(':id', entId)]);
  }
  return out;
}

describe('authentication on every admin route', () => {
  it('covers the routes the app registers', () => {
    const routes = adminRoutes().map(([m, p]) => `${m} ${p.replace(entId, ':id')}`);
    expect(routes).toContain('POST /v1/entitlements');
    expect(routes).toContain('DELETE /v1/tokens/:id');
    expect(routes).toContain('POST /v1/leases/:id/revoke');
    expect(routes).toContain('GET /v1/license/status');
    expect(routes.length).toBeGreaterThanOrEqual(16);
  });

  const credentials: Array<[string, () => Record<string, string>, RegExp]> = [
    ['no Authorization header', () => ({}), /needs an API token/],
    [
      'a Basic header',
      () => ({ authorization: 'Basic YWRtaW46YWRtaW4=' }),
      /must be "Bearer <token>"/,
    ],
    ['an empty bearer', () => ({ authorization: 'Bearer ' }), /must be "Bearer <token>"/],
    [
      'a malformed token',
      () => ({ authorization: 'Bearer not-a-token' }),
      /missing, malformed, unknown, expired or revoked/,
    ],
    [
      'an unknown token of the right shape',
      () => ({ authorization: `Bearer bpls_${'A'.repeat(43)}` }),
      /missing, malformed, unknown, expired or revoked/,
    ],
    [
      'a revoked token',
      () => ({ authorization: `Bearer ${revoked}` }),
      /missing, malformed, unknown, expired or revoked/,
    ],
    [
      'an expired token',
      () => ({ authorization: `Bearer ${expired}` }),
      /missing, malformed, unknown, expired or revoked/,
    ],
  ];

  describe.each(credentials)('with %s', (_name, headers, message) => {
    it('answers 401 unauthorized with the envelope on every admin route, changing nothing', async () => {
      const before = h.snapshot();
      for (const [method, path] of adminRoutes()) {
        const res = await h.app.request(path, {
          method,
          headers: { ...headers(), 'content-type': 'application/json' },
          body: method === 'GET' ? undefined : '{}',
        });
        const body = (await res.json()) as any;
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(body.error.code).toBe('unauthorized');
        expect(body.error.message).toMatch(message);
        expect(body.error.request_id).toMatch(/^req_/);
      }
      expect(h.snapshot()).toEqual(before);
    });
  });
});

describe('bad input on every route with a body', () => {
  const bodyRoutes = () => [
    ['POST', '/v1/entitlements'],
    ['PUT', `/v1/entitlements/${entId}`],
    ['PATCH', `/v1/entitlements/${entId}`],
    ['POST', `/v1/entitlements/${entId}/renew`],
    ['POST', '/v1/entitlements/import'],
    ['POST', '/v1/tokens'],
    ['POST', '/v1/license/lease'],
    ['POST', '/v1/license/lease/renew'],
    ['POST', '/v1/license/lease/release'],
  ];

  const huge = JSON.stringify({ ...seedEntitlement, tenant_id: 'x'.repeat(70 << 20) });
  const cases: Array<[string, string, number, string]> = [
    ['malformed JSON', '{"tenant_id": ', 400, 'invalid_request'],
    ['an empty body', '', 400, 'invalid_request'],
    ['a JSON array', '[1,2,3]', 400, 'invalid_request'],
    ['a JSON string', '"hello"', 400, 'invalid_request'],
    ['null', 'null', 400, 'invalid_request'],
    [
      'wrong types',
      JSON.stringify({
        tenant_id: 5,
        product_id: [],
        policy_json: 'concurrent',
        starts_at: 1,
        ends_at: true,
        period_months: '12',
        name: 7,
        entitlements: 'all',
      }),
      400,
      'invalid_request',
    ],
    [
      'an unknown policy type',
      JSON.stringify({
        ...seedEntitlement,
        policy_json: { type: 'galactic', max_seats: 1 },
        entitlements: [{ ...seedEntitlement, policy_json: { type: 'galactic' } }],
      }),
      400,
      'invalid_request',
    ],
    [
      'ends before starts',
      JSON.stringify({
        ...seedEntitlement,
        starts_at: '2025-01-01T00:00:00Z',
        ends_at: '2024-01-01T00:00:00Z',
        entitlements: [{ ...seedEntitlement, ends_at: '2020-01-01T00:00:00Z' }],
      }),
      400,
      'invalid_request',
    ],
    [
      'hostile strings',
      JSON.stringify({
        ...seedEntitlement,
        tenant_id: "x'; DROP TABLE entitlements; --",
        product_id: 'a\u0000b',
        name: '\u001b[31mred',
        entitlements: [{ ...seedEntitlement, tenant_id: 'a\nb' }],
      }),
      400,
      'invalid_request',
    ],
    [
      'a __proto__ key',
      `{"__proto__": {"admin": true}, "tenant_id": "t", "product_id": "p", "policy_json": {"type": "concurrent", "max_seats": 1, "__proto__": {"x": 1}}, "starts_at": "2024-01-01T00:00:00Z", "ends_at": "2025-01-01T00:00:00Z", "period_months": 1, "name": "n", "entitlements": [{"__proto__": {}}]}`,
      400,
      'invalid_request',
    ],
    [
      'numbers out of range',
      JSON.stringify({
        ...seedEntitlement,
        policy_json: { type: 'concurrent', max_seats: 1e300 },
        period_months: -1,
        expires_in_days: 1.5,
        name: 'n',
        entitlements: [{ ...seedEntitlement, policy_json: { type: 'concurrent', max_seats: -1 } }],
      }),
      400,
      'invalid_request',
    ],
    [
      'an invalid date',
      JSON.stringify({
        ...seedEntitlement,
        starts_at: '2024-02-30T00:00:00Z',
        period_months: 0,
        name: '',
        entitlements: [{ ...seedEntitlement, starts_at: 'yesterday' }],
      }),
      400,
      'invalid_request',
    ],
    ['a huge body', huge, 413, 'payload_too_large'],
  ];

  describe.each(cases)('with %s', (_name, body, status, code) => {
    it(`answers ${status} ${code} on every route, changing nothing`, async () => {
      const before = h.snapshot();
      for (const [method, path] of bodyRoutes()) {
        const res = await h.app.request(path!, {
          method,
          headers: { authorization: `Bearer ${h.admin}`, 'content-type': 'application/json' },
          body,
        });
        const json = (await res.json()) as any;
        expect(res.status, `${method} ${path}: ${JSON.stringify(json)}`).toBe(status);
        expect(json.error.code).toBe(code);
        expect(typeof json.error.message).toBe('string');
        expect(json.error.message.length).toBeGreaterThan(5);
      }
      expect(h.snapshot()).toEqual(before);
      expect(({} as any).admin).toBeUndefined();
    });
  });

  it('answers not_found with the envelope for unknown routes and methods', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['DELETE', '/v1/entitlements'],
      ['GET', '/v1/../etc/passwd'],
    ]) {
      const r = await h.req(method!, path!);
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe('not_found');
    }
  });

  it('refuses bad query parameters on the list', async () => {
    for (const q of ['limit=0', 'limit=100000', 'limit=abc', 'status=happy', 'bogus=1']) {
      const r = await h.req('GET', `/v1/entitlements?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.code).toBe('invalid_request');
    }
  });
});

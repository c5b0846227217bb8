/**
 * Property test: whatever JSON (or not-JSON) arrives at any route, the answer is a 4xx/2xx with
 * the envelope on errors, never a 500, and the audit chain stays intact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHarness, seedEntitlement, type Harness } from '../helpers.ts';

let h: Harness;
let entId: string;
let leaseId: string;
beforeAll(async () => {
  h = createHarness();
  entId = (
    await h.req('POST', '/v1/entitlements', {
      ...seedEntitlement,
      policy_json: { type: 'per_user', max_seats: 50 },
      ends_at: '2030-01-01T00:00:00Z',
    })
  ).body.entitlement_id;
  leaseId = (
    await h.req(
      'POST',
      '/v1/license/lease',
      {
        product_id: 'your-product-id',
        tenant_id: 'customer-tenant-id',
        subject_type: 'user',
        subject_id: 'u1',
      },
      null,
    )
  ).body.lease_id;
});
afterAll(() => h.close());

const routes = () =>
  h.app.routes
    .filter((r) => r.method !== 'ALL' && r.method !== 'GET')
    .map(
      (r) =>
        [
          r.method,
          r.path
            .replace(':seat_id', 'seat_x')
            .replace(
              ':id',
              r.path.startsWith('/v1/leases/')
                ? leaseId
                : r.path.startsWith('/v1/tokens/')
                  ? 'tok_x'
                  : entId,
            ),
        ] as const,
    );

// Values near the shapes the routes expect, so the fuzzer reaches past the first check.
const near = fc.record(
  {
    tenant_id: fc.oneof(fc.string(), fc.constant('customer-tenant-id')),
    product_id: fc.oneof(fc.string(), fc.constant('your-product-id')),
    subject_type: fc.oneof(fc.constantFrom('user', 'machine'), fc.string()),
    subject_id: fc.string(),
    lease_id: fc.oneof(fc.string(), fc.constant('lease_AAAAAAAAAAAAAAAAAAAAAA')),
    policy_json: fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          type: fc.constantFrom('concurrent', 'per_user', 'feature_based', 'team'),
          max_seats: fc.oneof(fc.integer(), fc.double()),
        },
        { requiredKeys: [] },
      ),
    ),
    starts_at: fc.oneof(
      fc.string(),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    ),
    ends_at: fc.oneof(
      fc.string(),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    ),
    features: fc.oneof(fc.array(fc.string()), fc.jsonValue()),
    period_months: fc.oneof(fc.integer(), fc.string()),
    entitlements: fc.array(fc.jsonValue(), { maxLength: 3 }),
    subjects: fc.array(fc.jsonValue(), { maxLength: 3 }),
    principal_ids: fc.array(fc.string(), { maxLength: 3 }),
    name: fc.string(),
    role: fc.string(),
  },
  { requiredKeys: [] },
);

describe('any body on any route', () => {
  it('is answered without a 500, with the envelope on errors', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1000 }),
        fc.oneof(
          near.map((v) => JSON.stringify(v)),
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.string(),
        ),
        async (pick, body) => {
          const all = routes();
          const [method, path] = all[pick % all.length]!;
          const res = await h.app.request(path, {
            method,
            headers: { authorization: `Bearer ${h.admin}`, 'content-type': 'application/json' },
            body,
          });
          expect(res.status, `${method} ${path} ${body.slice(0, 200)}`).toBeLessThan(500);
          if (res.status >= 400 && res.headers.get('content-type')?.includes('json')) {
            const json = (await res.json()) as any;
            expect(typeof json.error.code).toBe('string');
            expect(typeof json.error.message).toBe('string');
          }
        },
      ),
      { numRuns: 600, seed: 20261122 },
    );
    expect(h.services.audit.verify().firstBreak).toBeNull();
  });
});

// What the entitlement routes say to a person who got the body wrong: a missing field by name, a
// policy field put at the top level pointed to policy_json; nothing is written either way.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, SEED_NOW, seedEntitlement, type Harness } from '../../../test/helpers.ts';

let h: Harness;
// The seed's term (2024) is in force at SEED_NOW: no warnings unless a test moves the clock.
beforeEach(() => {
  h = createHarness({ now: SEED_NOW });
});
afterEach(() => h.close());

/** Sends a body that must be refused with 400 invalid_request and checks that nothing changed. */
async function refused(method: string, path: string, body: unknown) {
  const before = h.snapshot();
  const r = await h.req(method, path, body);
  expect(r.status).toBe(400);
  expect(r.body.error.code).toBe('invalid_request');
  expect(h.snapshot()).toEqual(before);
  return r.body.error as {
    message: string;
    details: { issues: { path: string; message: string }[] };
  };
}

describe('missing fields are named, never raw validator text', () => {
  it('POST without starts_at: "starts_at is required"', async () => {
    const { starts_at: _, ...body } = seedEntitlement;
    const e = await refused('POST', '/v1/entitlements', body);
    expect(e.message).toBe('invalid request body: starts_at is required');
    expect(e.details.issues).toEqual([{ path: 'starts_at', message: 'starts_at is required' }]);
    expect(e.message).not.toMatch(/expected|received|undefined/);
  });

  it('a nested field by its full path, every missing field listed', async () => {
    const e = await refused('POST', '/v1/entitlements', { policy_json: {} });
    const said = e.details.issues.map((i) => i.message);
    expect(said).toEqual(
      expect.arrayContaining([
        'tenant_id is required',
        'product_id is required',
        'starts_at is required',
        'ends_at is required',
      ]),
    );
    expect(said.join('\n')).not.toMatch(/expected|received|undefined/);
  });

  it('a value of the wrong kind says what was expected in words', async () => {
    const e = await refused('POST', '/v1/entitlements', { ...seedEntitlement, tenant_id: 7 });
    expect(e.message).toBe('invalid request body: tenant_id: must be a string, not a number');
  });

  it('the same wording on a lease request and a token request', async () => {
    const lease = await refused('POST', '/v1/license/lease', { product_id: 'p', tenant_id: 't' });
    expect(lease.details.issues).toEqual(
      expect.arrayContaining([{ path: 'subject_id', message: 'subject_id is required' }]),
    );
    const token = await refused('POST', '/v1/tokens', { role: 'admin' });
    expect(token.message).toBe('invalid request body: name is required');
  });
});

describe('policy fields at the top level point to policy_json', () => {
  it('PATCH {"max_seats": 12} names where it goes, and changes nothing', async () => {
    const made = await h.req('POST', '/v1/entitlements', seedEntitlement);
    expect(made.status).toBe(201);
    const id = made.body.entitlement_id as string;
    const e = await refused('PATCH', `/v1/entitlements/${id}`, { max_seats: 12 });
    expect(e.message).toMatch(
      /^invalid request body: max_seats belongs in policy_json: \{"policy_json": \{"max_seats": 12\}\} \(policy_json replaces the whole policy/,
    );
    expect(h.store.entitlements.get(id)?.policy.max_seats).toBe(10);
  });

  it('POST with features beside policy_json names where they go', async () => {
    const e = await refused('POST', '/v1/entitlements', {
      ...seedEntitlement,
      features: ['feature-a'],
    });
    expect(e.message).toBe(
      'invalid request body: features belongs in policy_json: {"policy_json": {"features": ["feature-a"]}}',
    );
  });
});

describe('warnings on create: an entitlement expired on arrival or not yet started is made, and said', () => {
  it("the seed's request in 2026: 201 with warnings already_expired, stored", async () => {
    h.clock.set('2026-06-01T00:00:00Z');
    const r = await h.req('POST', '/v1/entitlements', seedEntitlement);
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('expired');
    expect(r.body.warnings).toEqual([
      {
        code: 'already_expired',
        message:
          'ends_at 2024-12-31T23:59:59Z is in the past: the entitlement is expired on arrival',
      },
    ]);
    expect(h.store.entitlements.get(r.body.entitlement_id)?.endsAt).toBe(
      Date.parse('2024-12-31T23:59:59Z'),
    );
  });

  it('a term not yet begun: not_started; a term in force: no warnings field', async () => {
    const later = await h.req('POST', '/v1/entitlements', {
      ...seedEntitlement,
      starts_at: '2030-01-01T00:00:00Z',
      ends_at: '2031-01-01T00:00:00Z',
    });
    expect(later.status).toBe(201);
    expect(later.body.status).toBe('pending');
    expect(later.body.warnings).toEqual([
      {
        code: 'not_started',
        message:
          'starts_at 2030-01-01T00:00:00Z is in the future: no lease is granted before then (status pending)',
      },
    ]);
    const now = await h.req('POST', '/v1/entitlements', seedEntitlement);
    expect(now.status).toBe(201);
    expect(now.body).not.toHaveProperty('warnings');
  });

  it('the bulk import warns per item and imports every item', async () => {
    h.clock.set('2026-06-01T00:00:00Z');
    const r = await h.req('POST', '/v1/entitlements/import', {
      entitlements: [
        seedEntitlement,
        { ...seedEntitlement, starts_at: '2026-01-01T00:00:00Z', ends_at: '2027-01-01T00:00:00Z' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.body.created).toBe(2);
    expect(r.body.items[0].warnings).toEqual([
      expect.objectContaining({ code: 'already_expired' }),
    ]);
    expect(r.body.items[1]).not.toHaveProperty('warnings');
    for (const i of r.body.items) expect(h.store.entitlements.get(i.entitlement_id)).toBeDefined();
  });
});

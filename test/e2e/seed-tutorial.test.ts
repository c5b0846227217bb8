// The seed tutorial ("Importing Your First License"), request by request, against the REAL server
// started with the CLI (dist/cli.cjs serve) and spoken to with fetch. The requests are the
// tutorial's own: same method, path, headers and JSON bodies; only the 2024 dates are moved to the
// present (starts one year ago, ends one year ahead) so the entitlements are active today.
// Lease tokens are checked with an independent PASETO v4 verifier (panva's `paseto`) as well as
// with our own client SDK.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublicProtocol } from 'paseto';
import { ImportPublicKeyFactory, VerifyFactory } from 'paseto/v4/public';
import { CLI, killStrays, startServe, type ServeHandle } from '../spawn.ts';
import { YEAR_MS, initDataDir, rfc3339 } from './world.ts';
import { verifyLeaseToken } from '../../clients/typescript/src/index.ts';

const RFC3339_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const STARTS_AT = rfc3339(Date.now() - YEAR_MS);
const ENDS_AT = rfc3339(Date.now() + YEAR_MS);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let root: string;
let dataDir: string;
let adminToken: string;
let server: ServeHandle | undefined;
let base: string;

/** fetch, returning status, headers and the parsed JSON body. */
async function call(method: string, url: string, opts: { token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

const v4 = new PublicProtocol(ImportPublicKeyFactory, VerifyFactory);

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-seed-'));
  dataDir = path.join(root, 'data');
  adminToken = (await initDataDir(root, dataDir)).admin_token;
  expect(adminToken).toMatch(/^bpls_/);
  server = await startServe(CLI, ['--data-dir', dataDir, '--port', '0'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  base = server.base;
});

afterAll(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null)
    await server.stop();
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('the seed tutorial against the real server', () => {
  // Shared across the steps below (they run in order, as the tutorial does).
  let entitlementId: string; // step 1's, tenant customer-tenant-id
  let yourTenantEntitlementId: string; // the one step 3's lease lands on, tenant your-tenant-id
  let keysBody: { keys: Array<{ kid: string; public_key: string; status: string }> };
  let lease: { lease_id: string; token: string; expires_at: string; features: string[] };

  // Step 1's body, verbatim but for the dates.
  const step1Body = (tenant: string) => ({
    tenant_id: tenant,
    product_id: 'your-product-id',
    policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a', 'feature-b'] },
    starts_at: STARTS_AT,
    ends_at: ENDS_AT,
  });
  // Step 2's body, verbatim.
  const step2Body = {
    policy_json: {
      type: 'concurrent',
      max_seats: 20,
      features: ['feature-a', 'feature-b', 'feature-c'],
    },
  };

  it('step 1: POST /v1/entitlements creates the entitlement (201) with the fields the tutorial shows', async () => {
    const before = Date.now();
    const r = await call('POST', `${base}/v1/entitlements`, {
      token: adminToken,
      body: step1Body('customer-tenant-id'),
    });
    const after = Date.now();
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      tenant_id: 'customer-tenant-id',
      product_id: 'your-product-id',
      policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a', 'feature-b'] },
      starts_at: STARTS_AT,
      ends_at: ENDS_AT,
      status: 'active',
    });
    expect(r.body.entitlement_id).toMatch(/^ent_[A-Za-z0-9_-]+$/);
    expect(r.body.created_at).toMatch(RFC3339_SECONDS);
    const created = Date.parse(r.body.created_at);
    expect(created).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(created).toBeLessThanOrEqual(after);
    entitlementId = r.body.entitlement_id;

    // The tutorial's step 3 asks for a lease as tenant "your-tenant-id" while step 1 created the
    // entitlement for "customer-tenant-id" (the seed is inconsistent). Leases are matched by tenant,
    // so for step 3 to work verbatim an entitlement for "your-tenant-id" must exist too: the same
    // step 1 body with that tenant.
    const mine = await call('POST', `${base}/v1/entitlements`, {
      token: adminToken,
      body: step1Body('your-tenant-id'),
    });
    expect(mine.status, JSON.stringify(mine.body)).toBe(201);
    expect(mine.body.tenant_id).toBe('your-tenant-id');
    yourTenantEntitlementId = mine.body.entitlement_id;
    expect(yourTenantEntitlementId).not.toBe(entitlementId);
  });

  it('step 2: PUT /v1/entitlements/{id} replaces the policy (200)', async () => {
    const r = await call('PUT', `${base}/v1/entitlements/${entitlementId}`, {
      token: adminToken,
      body: step2Body,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({
      entitlement_id: entitlementId,
      tenant_id: 'customer-tenant-id',
      policy_json: step2Body.policy_json,
      starts_at: STARTS_AT,
      ends_at: ENDS_AT,
    });
    expect(r.body.updated_at).toMatch(RFC3339_SECONDS);
    const shown = await call('GET', `${base}/v1/entitlements/${entitlementId}`, {
      token: adminToken,
    });
    expect(shown.status).toBe(200);
    expect(shown.body.policy_json).toEqual({
      type: 'concurrent',
      max_seats: 20,
      features: ['feature-a', 'feature-b', 'feature-c'],
    });

    // The same step 2 on the your-tenant-id entitlement, so step 3's lease carries the step 2 policy.
    const mine = await call('PUT', `${base}/v1/entitlements/${yourTenantEntitlementId}`, {
      token: adminToken,
      body: step2Body,
    });
    expect(mine.status, JSON.stringify(mine.body)).toBe(200);
    expect(mine.body.policy_json).toEqual(step2Body.policy_json);
  });

  it('step 3: POST /v1/license/lease without Authorization grants a lease (201) whose token verifies', async () => {
    const before = Date.now();
    const r = await call('POST', `${base}/v1/license/lease`, {
      body: {
        product_id: 'your-product-id',
        tenant_id: 'your-tenant-id',
        subject_type: 'user',
        subject_id: 'user_123',
      },
    });
    const after = Date.now();
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(Object.keys(r.body).sort()).toEqual(['expires_at', 'features', 'lease_id', 'token']);
    expect(r.body.lease_id).toMatch(/^lease_[A-Za-z0-9_-]+$/);
    expect(r.body.token).toMatch(/^v4\.public\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(r.body.features).toEqual(['feature-a', 'feature-b', 'feature-c']);
    expect(r.body.expires_at).toMatch(RFC3339_SECONDS);
    const exp = Date.parse(r.body.expires_at);
    // The default lease TTL is 3600 s, truncated to whole seconds.
    expect(exp).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 3600_000);
    expect(exp).toBeLessThanOrEqual(after + 3600_000);
    lease = r.body;

    // The public key, with no auth.
    const keys = await call('GET', `${base}/v1/license/keys`);
    expect(keys.status).toBe(200);
    expect(keys.body.keys).toHaveLength(1);
    expect(keys.body.keys[0]).toEqual({
      kid: expect.stringMatching(/^k4\.pid\./),
      public_key: expect.stringMatching(/^k4\.public\./),
      status: 'active',
    });
    keysBody = keys.body;
    const { kid, public_key } = keysBody.keys[0]!;

    // An independent PASETO v4 implementation: panva's `paseto`.
    const publicKey = await v4.ImportPublicKey(public_key as `k4.public.${string}`);
    const { claims, footer } = await v4.Verify(publicKey, lease.token, {
      audience: 'your-product-id',
      subject: 'user:user_123',
      tokenIdentifier: lease.lease_id,
    });
    expect(JSON.parse(new TextDecoder().decode(footer))).toEqual({ kid });
    expect(claims).toMatchObject({
      typ: 'bp.lease/1',
      sub: 'user:user_123',
      aud: 'your-product-id',
      jti: lease.lease_id,
      tenant_id: 'your-tenant-id',
      entitlement_id: yourTenantEntitlementId,
      policy: 'concurrent',
      features: ['feature-a', 'feature-b', 'feature-c'],
    });
    for (const t of ['iat', 'nbf', 'exp'] as const) expect(claims[t], t).toMatch(RFC3339_SECONDS);
    expect(claims.nbf).toBe(claims.iat);
    expect(Date.parse(claims.exp!)).toBe(exp);
    expect(claims.grace).toBeUndefined();
    // A token for another product is refused by the independent verifier too.
    await expect(
      v4.Verify(publicKey, lease.token, { audience: 'another-product' }),
    ).rejects.toThrow();

    // Our own client SDK, given the keys body as is.
    const sdk = verifyLeaseToken(lease.token, keysBody, {
      productId: 'your-product-id',
      tenantId: 'your-tenant-id',
    });
    expect(sdk).toMatchObject({
      typ: 'bp.lease/1',
      sub: 'user:user_123',
      subjectType: 'user',
      subjectId: 'user_123',
      aud: 'your-product-id',
      jti: lease.lease_id,
      tenantId: 'your-tenant-id',
      entitlementId: yourTenantEntitlementId,
      policy: 'concurrent',
      features: ['feature-a', 'feature-b', 'feature-c'],
      grace: false,
    });
    expect(sdk.exp.getTime()).toBe(exp);
  });

  it('step 4: POST /v1/license/lease/renew keeps the lease id and issues a new token (200)', async () => {
    // Tokens carry whole seconds and Ed25519 is deterministic: a renewal within the same second
    // would sign identical claims. Step into the next second so the new token must differ.
    await sleep(1100);
    const r = await call('POST', `${base}/v1/license/lease/renew`, {
      body: { lease_id: lease.lease_id },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['expires_at', 'features', 'lease_id', 'token']);
    expect(r.body.lease_id).toBe(lease.lease_id);
    expect(r.body.token).toMatch(/^v4\.public\./);
    expect(r.body.token).not.toBe(lease.token);
    expect(Date.parse(r.body.expires_at)).toBeGreaterThanOrEqual(Date.parse(lease.expires_at));
    expect(r.body.features).toEqual(['feature-a', 'feature-b', 'feature-c']);
    const publicKey = await v4.ImportPublicKey(
      keysBody.keys[0]!.public_key as `k4.public.${string}`,
    );
    const { claims } = await v4.Verify(publicKey, r.body.token, {
      audience: 'your-product-id',
      tokenIdentifier: lease.lease_id,
    });
    expect(claims.exp).toBe(r.body.expires_at);
    expect(verifyLeaseToken(r.body.token, keysBody, { productId: 'your-product-id' }).jti).toBe(
      lease.lease_id,
    );
    lease = r.body;
  });

  it('step 6: GET /v1/license/status shows the entitlement, the current lease and the use (200)', async () => {
    const r = await call(
      'GET',
      `${base}/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123`,
      { token: adminToken },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({
      entitlement_id: yourTenantEntitlementId,
      status: 'active',
      current_lease: { lease_id: lease.lease_id, expires_at: lease.expires_at },
      features: ['feature-a', 'feature-b', 'feature-c'],
      usage: { concurrent_seats_used: 1, max_seats: 20 },
    });
    // It is an admin read: no token, no answer.
    expect(
      (
        await call(
          'GET',
          `${base}/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123`,
        )
      ).status,
    ).toBe(401);
  });

  it('step 5: release frees the seat (200); the released lease cannot be renewed (410); release is idempotent', async () => {
    const r = await call('POST', `${base}/v1/license/lease/release`, {
      body: { lease_id: lease.lease_id },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ lease_id: lease.lease_id, state: 'released' });

    const renew = await call('POST', `${base}/v1/license/lease/renew`, {
      body: { lease_id: lease.lease_id },
    });
    expect(renew.status, JSON.stringify(renew.body)).toBe(410);
    expect(renew.body.error).toMatchObject({ code: 'lease_released', message: expect.any(String) });

    const again = await call('POST', `${base}/v1/license/lease/release`, {
      body: { lease_id: lease.lease_id },
    });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body).toMatchObject({ lease_id: lease.lease_id, state: 'released' });

    // The tutorial's status query (no tenant) and the same scoped to the tenant that leased.
    for (const q of ['', '&tenant_id=your-tenant-id']) {
      const s = await call(
        'GET',
        `${base}/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123${q}`,
        { token: adminToken },
      );
      expect(s.status, JSON.stringify(s.body)).toBe(200);
      expect(s.body.current_lease, q).toBeNull();
      expect(s.body.usage.concurrent_seats_used, q).toBe(0);
    }
    const scoped = await call(
      'GET',
      `${base}/v1/license/status?product_id=your-product-id&subject_type=user&subject_id=user_123&tenant_id=your-tenant-id`,
      { token: adminToken },
    );
    expect(scoped.body).toMatchObject({
      entitlement_id: yourTenantEntitlementId,
      status: 'active',
      usage: { concurrent_seats_used: 0, max_seats: 20 },
    });
  });

  it('local server: the manual entitlement provisioning request (201)', async () => {
    const body = {
      tenant_id: 'local-tenant-id',
      product_id: 'your-product-id',
      policy_json: { type: 'concurrent', max_seats: 10 },
      starts_at: STARTS_AT,
      ends_at: ENDS_AT,
    };
    // The tutorial writes http://localhost:8080; here the port is the one the server picked.
    const r = await call('POST', `${base.replace('127.0.0.1', 'localhost')}/v1/entitlements`, {
      token: adminToken,
      body,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      tenant_id: 'local-tenant-id',
      product_id: 'your-product-id',
      policy_json: { type: 'concurrent', max_seats: 10 },
      starts_at: STARTS_AT,
      ends_at: ENDS_AT,
      status: 'active',
    });
    expect(r.body.entitlement_id).toMatch(/^ent_/);
  });

  it('bulk import: the tutorial format with two entitlements (200, created 2)', async () => {
    // The tutorial elides policy_json and the dates ("{...}", "..."); these are filled in.
    const body = {
      entitlements: [
        {
          tenant_id: 'customer-1',
          product_id: 'product-a',
          policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a'] },
          starts_at: STARTS_AT,
          ends_at: ENDS_AT,
        },
        {
          tenant_id: 'customer-2',
          product_id: 'product-a',
          policy_json: { type: 'per_user', max_seats: 50, features: ['feature-a', 'feature-b'] },
          starts_at: STARTS_AT,
          ends_at: ENDS_AT,
        },
      ],
    };
    const r = await call('POST', `${base}/v1/entitlements/import`, { token: adminToken, body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ created: 2, updated: 0, total: 2 });
    expect(r.body.items).toHaveLength(2);
    for (const tenant of ['customer-1', 'customer-2']) {
      const list = await call('GET', `${base}/v1/entitlements?tenant_id=${tenant}`, {
        token: adminToken,
      });
      expect(list.status).toBe(200);
      expect(list.body.data).toHaveLength(1);
      expect(list.body.data[0]).toMatchObject({
        tenant_id: tenant,
        product_id: 'product-a',
        status: 'active',
      });
    }
  });

  it('the server stops on SIGTERM with exit 0', async () => {
    expect(await server!.stop(30_000)).toEqual({ code: 0, signal: null });
    expect(server!.extraStdout).toEqual([]);
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../../../test/helpers.ts';

let h: Harness;
beforeEach(() => {
  h = createHarness();
});
afterEach(() => h.close());

describe('GET /v1/whoami', () => {
  it('names the presented token, its role, tenant and permissions, and the server clock', async () => {
    const r = await h.req('GET', '/v1/whoami');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      token_id: expect.stringMatching(/^tok_/),
      name: 'test admin',
      role: 'admin',
      tenant_id: null,
      permissions: ['read', 'write', 'seats', 'tokens', 'sync', 'audit'],
      server_time: '2024-01-15T10:30:00Z',
      clock_suspect: false,
    });
    const scoped = h.services.apiTokens.create(
      { name: 'acme desk', role: 'tenant_admin', tenantId: 'acme' },
      'test',
    );
    const s = await h.req('GET', '/v1/whoami', undefined, scoped.token);
    expect(s.body).toMatchObject({
      token_id: scoped.record.id,
      name: 'acme desk',
      role: 'tenant_admin',
      tenant_id: 'acme',
      permissions: ['read', 'seats'],
    });
    // Asking changes nothing but the token's last use.
    const before = h.snapshot();
    await h.req('GET', '/v1/whoami', undefined, h.reader);
    expect(h.snapshot()).toEqual(before);
  });

  it('refuses a missing or revoked token with 401 unauthorized', async () => {
    const none = await h.req('GET', '/v1/whoami', undefined, null);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('unauthorized');
    const t = h.services.apiTokens.create({ name: 'gone', role: 'reader' }, 'test');
    h.services.apiTokens.revoke(t.record.id, 'test');
    const gone = await h.req('GET', '/v1/whoami', undefined, t.token);
    expect(gone.status).toBe(401);
    expect(gone.body.error.code).toBe('unauthorized');
  });
});

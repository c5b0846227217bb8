import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../test/token-assert.ts';
import { verifyClaims } from './claims.ts';
import { generateSigningKey, verifyKeyFromPaserk } from './keys.ts';
import {
  LEASE_TOKEN_TYPE,
  buildLeaseClaims,
  issueLeaseToken,
  issueLeaseTokenAsync,
  readLeaseClaims,
} from './lease-token.ts';
import type { LeaseClaimsInput } from './lease-token.ts';
import { decodeFooterUnverified, verifyV4Public } from './paseto.ts';

const key = generateSigningKey();
const input: LeaseClaimsInput = {
  serverId: 'srv_1',
  subjectType: 'user',
  subjectId: 'user_123',
  productId: 'prod_desktop',
  leaseId: 'lease_9',
  tenantId: 'ten_1',
  entitlementId: 'ent_7',
  policyType: 'floating',
  features: ['export.pdf', 'ai.assist'],
  issuedAtMs: Date.UTC(2024, 0, 15, 11, 30, 0, 250),
  expiresAtMs: Date.UTC(2024, 0, 15, 12, 30, 0, 750),
  grace: false,
};

describe('lease claims', () => {
  it('maps the input to the lease claim names, with second-precision UTC times', () => {
    expect(buildLeaseClaims(input)).toStrictEqual({
      typ: 'bp.lease/1',
      iss: 'srv_1',
      sub: 'user:user_123',
      aud: 'prod_desktop',
      jti: 'lease_9',
      tenant_id: 'ten_1',
      entitlement_id: 'ent_7',
      policy: 'floating',
      features: ['export.pdf', 'ai.assist'],
      iat: '2024-01-15T11:30:00Z',
      nbf: '2024-01-15T11:30:00Z',
      exp: '2024-01-15T12:30:00Z',
    });
  });

  it('includes grace: true only inside grace', () => {
    expect(buildLeaseClaims({ ...input, grace: true }).grace).toBe(true);
    expect('grace' in buildLeaseClaims(input)).toBe(false);
  });

  it('copies the features array rather than sharing it', () => {
    const features = ['a'];
    const claims = buildLeaseClaims({ ...input, features });
    features.push('b');
    expect(claims.features).toEqual(['a']);
  });

  it('refuses inputs that would make an ambiguous or useless token', () => {
    expectTokenError(
      () => buildLeaseClaims({ ...input, subjectType: 'user:admin' }),
      'bad_claims',
      'must not contain ":"',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, subjectId: '' }),
      'bad_claims',
      'subjectId',
      'empty string',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, productId: undefined as never }),
      'bad_claims',
      'productId',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, features: ['ok', 3 as never] }),
      'bad_claims',
      'features',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, grace: 'yes' as never }),
      'bad_claims',
      'grace',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, expiresAtMs: input.issuedAtMs + 500 }),
      'bad_claims',
      'at least one second after issue',
    );
    expectTokenError(
      () => buildLeaseClaims({ ...input, expiresAtMs: Number.NaN }),
      'bad_claims',
      'cannot format',
    );
  });
});

describe('lease tokens', () => {
  it('round-trips through verifyClaims and readLeaseClaims', () => {
    const token = issueLeaseToken(key, { ...input, grace: true });
    const { claims, footer } = verifyClaims([verifyKeyFromPaserk(key.publicPaserk)], token);
    expect(footer).toEqual({ kid: key.kid });
    const lease = readLeaseClaims(claims);
    expect(lease).toStrictEqual({
      typ: LEASE_TOKEN_TYPE,
      iss: 'srv_1',
      sub: 'user:user_123',
      subjectType: 'user',
      subjectId: 'user_123',
      aud: 'prod_desktop',
      jti: 'lease_9',
      tenantId: 'ten_1',
      entitlementId: 'ent_7',
      policy: 'floating',
      features: ['export.pdf', 'ai.assist'],
      iat: new Date('2024-01-15T11:30:00Z'),
      nbf: new Date('2024-01-15T11:30:00Z'),
      exp: new Date('2024-01-15T12:30:00Z'),
      grace: true,
      overdraft: false,
      borrowed: false,
    });
  });

  it('uses no implicit assertion, so the public key alone verifies it', () => {
    const token = issueLeaseToken(key, input);
    const { message } = verifyV4Public(verifyKeyFromPaserk(key.publicPaserk).publicKey, token);
    expect(JSON.parse(message.toString('utf8'))).toEqual(buildLeaseClaims(input));
    expect(JSON.parse(decodeFooterUnverified(token).toString('utf8'))).toEqual({ kid: key.kid });
  });

  it('issues the same token off-thread', async () => {
    await expect(issueLeaseTokenAsync(key, input)).resolves.toBe(issueLeaseToken(key, input));
  });

  it('rejects invalid input off-thread as a rejected promise', async () => {
    await expect(issueLeaseTokenAsync(key, { ...input, subjectType: 'a:b' })).rejects.toMatchObject(
      { code: 'bad_claims' },
    );
  });

  it('stays under 1 KiB for a typical lease', () => {
    expect(issueLeaseToken(key, input).length).toBeLessThan(1024);
  });
});

describe('readLeaseClaims', () => {
  const good = buildLeaseClaims(input) as Record<string, unknown>;

  it('refuses tokens of another type', () => {
    expectTokenError(
      () => readLeaseClaims({ ...good, typ: 'bp.session/1' }),
      'wrong_type',
      '"bp.session/1"',
      'expected "bp.lease/1"',
    );
    expectTokenError(() => readLeaseClaims({ ...good, typ: undefined }), 'wrong_type', 'missing');
  });

  it('refuses malformed claims, naming the claim', () => {
    expectTokenError(
      () => readLeaseClaims({ ...good, sub: 'user_123' }),
      'bad_claims',
      '"sub"',
      'subject_type:subject_id',
    );
    expectTokenError(() => readLeaseClaims({ ...good, sub: ':x' }), 'bad_claims', '"sub"');
    expectTokenError(
      () => readLeaseClaims({ ...good, aud: 5 }),
      'bad_claims',
      '"aud"',
      'got number',
    );
    expectTokenError(
      () => readLeaseClaims({ ...good, tenant_id: undefined }),
      'bad_claims',
      '"tenant_id"',
      'got nothing',
    );
    expectTokenError(
      () => readLeaseClaims({ ...good, features: 'export.pdf' }),
      'bad_claims',
      '"features"',
    );
    expectTokenError(() => readLeaseClaims({ ...good, grace: false }), 'bad_claims', '"grace"');
    expectTokenError(
      () => readLeaseClaims({ ...good, exp: '2024-01-15' }),
      'bad_claims',
      '"exp"',
      'RFC 3339',
    );
  });

  it('keeps a subject id that itself contains ":"', () => {
    const lease = readLeaseClaims({ ...good, sub: 'device:mac:aa:bb' });
    expect(lease.subjectType).toBe('device');
    expect(lease.subjectId).toBe('mac:aa:bb');
  });

  it('ignores unknown extra claims', () => {
    expect(readLeaseClaims({ ...good, future_field: 1 }).jti).toBe('lease_9');
  });
});

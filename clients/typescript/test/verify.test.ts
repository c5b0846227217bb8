import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../../test/token-assert.ts';
import { encodeBase64Url } from '../../../src/tokens/base64url.ts';
import { generateSigningKey } from '../../../src/tokens/keys.ts';
import { issueLeaseToken } from '../../../src/tokens/lease-token.ts';
import type { LeaseClaimsInput } from '../../../src/tokens/lease-token.ts';
import { paserkPid, toPaserkPublic } from '../../../src/tokens/paserk.ts';
import { signV4Public } from '../../../src/tokens/paseto.ts';
import { verifyLeaseToken } from '../src/index.ts';
import type { PublishedKeys } from '../src/index.ts';

const server = generateSigningKey();
const retired = generateSigningKey();
const attacker = generateSigningKey();
const body = {
  keys: [
    { kid: retired.kid, public_key: retired.publicPaserk, status: 'retired' },
    { kid: server.kid, public_key: server.publicPaserk, status: 'active' },
  ],
};
const input: LeaseClaimsInput = {
  serverId: 'srv_1',
  subjectType: 'user',
  subjectId: 'user_123',
  productId: 'prod_desktop',
  leaseId: 'lease_9',
  tenantId: 'ten_1',
  entitlementId: 'ent_7',
  policyType: 'floating',
  features: ['export.pdf'],
  issuedAtMs: Date.parse('2024-01-15T11:30:00Z'),
  expiresAtMs: Date.parse('2024-01-15T12:30:00Z'),
  grace: false,
};
const token = issueLeaseToken(server, input);
const during = new Date('2024-01-15T12:00:00Z');

describe('verifyLeaseToken', () => {
  it('returns typed claims for a valid token', () => {
    const lease = verifyLeaseToken(token, body, {
      now: during,
      productId: 'prod_desktop',
      tenantId: 'ten_1',
    });
    expect(lease).toStrictEqual({
      typ: 'bp.lease/1',
      iss: 'srv_1',
      sub: 'user:user_123',
      subjectType: 'user',
      subjectId: 'user_123',
      aud: 'prod_desktop',
      jti: 'lease_9',
      tenantId: 'ten_1',
      entitlementId: 'ent_7',
      policy: 'floating',
      features: ['export.pdf'],
      iat: new Date('2024-01-15T11:30:00Z'),
      nbf: new Date('2024-01-15T11:30:00Z'),
      exp: new Date('2024-01-15T12:30:00Z'),
      grace: false,
      overdraft: false,
      borrowed: false,
    });
  });

  it('accepts the keys array as well as the whole response body, and a numeric now', () => {
    expect(verifyLeaseToken(token, body.keys, { now: during.getTime() }).jti).toBe('lease_9');
  });

  it('accepts entries without a kid (it is computed from public_key)', () => {
    expect(
      verifyLeaseToken(token, [{ public_key: server.publicPaserk }], { now: during }).jti,
    ).toBe('lease_9');
  });

  it('verifies tokens from a retired key that is still listed', () => {
    const old = issueLeaseToken(retired, input);
    expect(verifyLeaseToken(old, body, { now: during }).jti).toBe('lease_9');
  });

  it('reports grace', () => {
    const graceToken = issueLeaseToken(server, { ...input, grace: true });
    expect(verifyLeaseToken(graceToken, body, { now: during }).grace).toBe(true);
  });

  it('rejects an expired token', () => {
    expectTokenError(
      () => verifyLeaseToken(token, body, { now: new Date('2024-01-15T12:30:00Z') }),
      'expired',
      'expired at 2024-01-15T12:30:00Z',
    );
  });

  it('allows leeway for clock differences', () => {
    const late = new Date('2024-01-15T12:30:30Z');
    expect(verifyLeaseToken(token, body, { now: late, leewaySeconds: 60 }).jti).toBe('lease_9');
  });

  it('rejects a token that is not valid yet', () => {
    expectTokenError(
      () => verifyLeaseToken(token, body, { now: new Date('2024-01-15T11:00:00Z') }),
      'not_yet_valid',
      'not valid before 2024-01-15T11:30:00Z',
    );
  });

  it('uses the system clock by default', () => {
    // The fixture token expired in 2024.
    expectTokenError(() => verifyLeaseToken(token, body), 'expired');
  });

  it('rejects a token for another product', () => {
    expectTokenError(
      () => verifyLeaseToken(token, body, { now: during, productId: 'prod_web' }),
      'wrong_audience',
      'for product "prod_desktop", not "prod_web"',
    );
  });

  it('rejects a token for another tenant', () => {
    expectTokenError(
      () => verifyLeaseToken(token, body, { now: during, tenantId: 'ten_2' }),
      'wrong_audience',
      'tenant "ten_1", not "ten_2"',
    );
  });

  it('rejects a token signed by a key that is not in the list', () => {
    const foreign = issueLeaseToken(attacker, input);
    expectTokenError(
      () => verifyLeaseToken(foreign, body, { now: during }),
      'unknown_key',
      'not in the key list (2 keys)',
      '/v1/license/keys',
    );
  });

  it('rejects a key list entry whose kid lies about its key', () => {
    // The attacker lists their own key under the server's kid and signs with it.
    const lying: PublishedKeys = {
      keys: [{ kid: server.kid, public_key: attacker.publicPaserk, status: 'active' }],
    };
    const forged = signV4Public(
      attacker.secretKey,
      Buffer.from(JSON.stringify({ typ: 'bp.lease/1' })),
      Buffer.from(JSON.stringify({ kid: server.kid })),
    );
    expectTokenError(
      () => verifyLeaseToken(forged, lying, { now: during }),
      'unknown_key',
      'does not match its public_key',
      'tampered',
    );
    // Nor does it help to claim the attacker's kid for the server's key.
    const swapped: PublishedKeys = [{ kid: attacker.kid, public_key: server.publicPaserk }];
    expectTokenError(
      () => verifyLeaseToken(token, swapped, { now: during }),
      'unknown_key',
      'does not match its public_key',
    );
  });

  it('uses an honest entry even when a lying one is also listed', () => {
    const mixed: PublishedKeys = [
      { kid: server.kid, public_key: attacker.publicPaserk },
      { kid: server.kid, public_key: server.publicPaserk },
    ];
    expect(verifyLeaseToken(token, mixed, { now: during }).jti).toBe('lease_9');
  });

  it('rejects a token whose footer kid was swapped to another listed key', () => {
    const [v, p, payload] = token.split('.');
    const swapped = `${v}.${p}.${payload}.${encodeBase64Url(Buffer.from(JSON.stringify({ kid: retired.kid })))}`;
    expectTokenError(() => verifyLeaseToken(swapped, body, { now: during }), 'bad_signature');
  });

  it('rejects a tampered token', () => {
    const [v, p, payload, footer] = token.split('.') as [string, string, string, string];
    const bytes = Buffer.from(payload, 'base64url');
    const text = bytes.toString('latin1').replace('"export.pdf"', '"export.all"');
    const tampered = `${v}.${p}.${encodeBase64Url(Buffer.from(text, 'latin1'))}.${footer}`;
    expect(tampered).not.toBe(token);
    expectTokenError(() => verifyLeaseToken(tampered, body, { now: during }), 'bad_signature');
  });

  it('rejects a validly signed token of another type', () => {
    const other = signV4Public(
      server.secretKey,
      Buffer.from(JSON.stringify({ typ: 'bp.session/1', exp: '2024-01-15T12:30:00Z' })),
      Buffer.from(JSON.stringify({ kid: server.kid })),
    );
    expectTokenError(
      () => verifyLeaseToken(other, body, { now: during }),
      'wrong_type',
      'not a lease token',
    );
  });

  it('rejects a forged token for the identity key: the key cannot be loaded', () => {
    const identity = Buffer.alloc(32);
    identity[0] = 1;
    const identityPaserk = toPaserkPublic(identity);
    const basePoint = Buffer.from(
      '5866666666666666666666666666666666666666666666666666666666666666',
      'hex',
    );
    const one = Buffer.alloc(32);
    one[0] = 1;
    const claims = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(token.split('.')[2]!, 'base64url').subarray(0, -64).toString()),
        features: ['everything'],
      }),
    );
    const forged = `v4.public.${encodeBase64Url(Buffer.concat([claims, basePoint, one]))}.${encodeBase64Url(
      Buffer.from(JSON.stringify({ kid: paserkPid(identityPaserk) })),
    )}`;
    const poisoned: PublishedKeys = {
      keys: [...body.keys, { kid: paserkPid(identityPaserk), public_key: identityPaserk }],
    };
    expectTokenError(
      () => verifyLeaseToken(forged, poisoned, { now: during }),
      'bad_key',
      'small-order',
    );
  });

  it('rejects a key list that is not the keys body or its array', () => {
    expectTokenError(
      () => verifyLeaseToken(token, { nope: [] } as never, { now: during }),
      'bad_key',
      'GET /v1/license/keys',
    );
    expectTokenError(() => verifyLeaseToken(token, null as never, { now: during }), 'bad_key');
  });

  it('skips unusable entries that are not the signing key', () => {
    const messy = [
      { public_key: 'k4.public.broken' },
      { public_key: 42 } as never,
      { kid: server.kid, public_key: server.publicPaserk },
    ];
    expect(verifyLeaseToken(token, messy, { now: during }).jti).toBe('lease_9');
  });

  it('rejects malformed tokens with the token error codes', () => {
    expectTokenError(
      () => verifyLeaseToken(`${token}.`, body, { now: during }),
      'malformed',
      'too many',
    );
    expectTokenError(
      () => verifyLeaseToken(token.replace('v4.public.', 'v4.local.'), body, { now: during }),
      'wrong_purpose',
    );
    expectTokenError(
      () => verifyLeaseToken(token.split('.').slice(0, 3).join('.'), body, { now: during }),
      'bad_footer',
      'no footer',
    );
  });

  it('rejects an invalid now', () => {
    expect(() => verifyLeaseToken(token, body, { now: new Date('nonsense') })).toThrow(RangeError);
  });
});

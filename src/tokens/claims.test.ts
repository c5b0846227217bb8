import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../test/token-assert.ts';
import { encodeBase64Url } from './base64url.ts';
import {
  checkTimeClaims,
  formatRfc3339,
  parseRfc3339,
  signClaims,
  signClaimsAsync,
  verifyClaims,
} from './claims.ts';
import { generateSigningKey, verifyKeyFromPaserk } from './keys.ts';
import type { VerifyKey } from './keys.ts';
import { signV4Public } from './paseto.ts';

const key = generateSigningKey();
const verifyKey = verifyKeyFromPaserk(key.publicPaserk);
const otherKey = generateSigningKey();
const keys: VerifyKey[] = [verifyKeyFromPaserk(otherKey.publicPaserk), verifyKey];
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const footerFor = (k = key): Buffer => utf8(JSON.stringify({ kid: k.kid }));

describe('signClaims / verifyClaims', () => {
  const claims = { sub: 'user:u1', n: 3, nested: { ok: true } };

  it('round-trips claims and puts the kid in the footer', () => {
    const token = signClaims(key, claims);
    const out = verifyClaims(keys, token);
    expect(out.claims).toEqual(claims);
    expect(out.footer).toEqual({ kid: key.kid });
    expect(out.key).toBe(verifyKey);
  });

  it('accepts a lookup function instead of a list', () => {
    const token = signClaims(key, claims);
    const seen: string[] = [];
    const out = verifyClaims((kid) => {
      seen.push(kid);
      return kid === key.kid ? verifyKey : undefined;
    }, token);
    expect(seen).toEqual([key.kid]);
    expect(out.claims).toEqual(claims);
  });

  it('keeps extra footer fields and always includes the kid', () => {
    const token = signClaims(key, claims, { footer: { wpk: 'x' } });
    expect(verifyClaims(keys, token).footer).toEqual({ wpk: 'x', kid: key.kid });
  });

  it('refuses a footer kid that names another key', () => {
    expectTokenError(
      () => signClaims(key, claims, { footer: { kid: otherKey.kid } }),
      'bad_footer',
      'does not match',
    );
  });

  it('refuses claims that are not an object', () => {
    expectTokenError(() => signClaims(key, [] as never), 'bad_claims', 'JSON object');
  });

  it('signs off-thread to the same token', async () => {
    await expect(signClaimsAsync(key, claims, { implicit: 'ctx' })).resolves.toBe(
      signClaims(key, claims, { implicit: 'ctx' }),
    );
  });

  it('binds the implicit assertion: wrong or missing fails', () => {
    const token = signClaims(key, claims, { implicit: '{"tenant_id":"t1"}' });
    expect(verifyClaims(keys, token, { implicit: '{"tenant_id":"t1"}' }).claims).toEqual(claims);
    expectTokenError(
      () => verifyClaims(keys, token, { implicit: '{"tenant_id":"t2"}' }),
      'bad_signature',
    );
    expectTokenError(() => verifyClaims(keys, token), 'bad_signature', 'implicit assertion');
  });

  it('reports an unknown kid', () => {
    const token = signClaims(generateSigningKey(), claims);
    expectTokenError(
      () => verifyClaims(keys, token),
      'unknown_key',
      'no verification key with kid "k4.pid.',
      'out of date',
    );
  });

  it('does not fall back to another key when the kid names one that did not sign', () => {
    // Footer names `key`, but the signature is by otherKey.
    const token = signV4Public(otherKey.secretKey, utf8(JSON.stringify(claims)), footerFor(key));
    expectTokenError(() => verifyClaims(keys, token), 'bad_signature');
  });

  it('rejects a tampered footer (the kid swapped to another known key)', () => {
    const token = signClaims(key, claims);
    const [h1, h2, body] = token.split('.');
    const swapped = `${h1}.${h2}.${body}.${encodeBase64Url(footerFor(otherKey))}`;
    expectTokenError(() => verifyClaims(keys, swapped), 'bad_signature');
  });

  it('rejects a token without a footer', () => {
    const token = signV4Public(key.secretKey, utf8('{}'));
    expectTokenError(() => verifyClaims(keys, token), 'bad_footer', 'no footer');
  });

  it('rejects footers that are not a JSON object with a string kid', () => {
    const cases: Array<[string, string]> = [
      ['not json', 'invalid JSON'],
      ['["k4.pid.x"]', 'must be a JSON object, got an array'],
      ['"k4.pid.x"', 'got string'],
      ['{}', 'no "kid" string'],
      ['{"kid":42}', 'no "kid" string'],
      ['{"kid":""}', 'no "kid" string'],
    ];
    for (const [footer, fragment] of cases) {
      const token = signV4Public(key.secretKey, utf8('{}'), utf8(footer));
      expectTokenError(() => verifyClaims(keys, token), 'bad_footer', fragment);
    }
  });

  it('rejects duplicate keys in the footer, even when validly signed', () => {
    const footer = utf8(`{"kid":"${otherKey.kid}","kid":"${key.kid}"}`);
    const token = signV4Public(key.secretKey, utf8('{}'), footer);
    expectTokenError(() => verifyClaims(keys, token), 'bad_footer', 'duplicate object key "kid"');
  });

  it('rejects a kid that carries key material instead of naming a key', () => {
    const token = signV4Public(
      key.secretKey,
      utf8('{}'),
      utf8(JSON.stringify({ kid: key.publicPaserk })),
    );
    expectTokenError(() => verifyClaims(keys, token), 'bad_footer', 'contains key material');
  });

  it('rejects duplicate keys in the claims, even when validly signed by our own key', () => {
    const token = signV4Public(key.secretKey, utf8('{"aud":"prod_a","aud":"prod_b"}'), footerFor());
    expectTokenError(
      () => verifyClaims(keys, token),
      'bad_claims',
      'token claims',
      'duplicate object key "aud"',
    );
  });

  it('rejects an unsafe integer in the claims', () => {
    const token = signV4Public(key.secretKey, utf8('{"seats":9007199254740993}'), footerFor());
    expectTokenError(() => verifyClaims(keys, token), 'bad_claims', 'outside the safe range');
  });

  it('rejects a __proto__ key in the claims', () => {
    const token = signV4Public(key.secretKey, utf8('{"__proto__":{"admin":true}}'), footerFor());
    expectTokenError(() => verifyClaims(keys, token), 'bad_claims', '"__proto__" is not allowed');
  });

  it('rejects claims that are not a JSON object', () => {
    for (const [body, fragment] of [
      ['[1]', 'an array'],
      ['null', 'got null'],
      ['7', 'got number'],
    ] as const) {
      const token = signV4Public(key.secretKey, utf8(body), footerFor());
      expectTokenError(
        () => verifyClaims(keys, token),
        'bad_claims',
        'must be a JSON object',
        fragment,
      );
    }
  });

  it('rejects claims that are not valid UTF-8', () => {
    const token = signV4Public(
      key.secretKey,
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
      footerFor(),
    );
    expectTokenError(() => verifyClaims(keys, token), 'bad_claims', 'not valid UTF-8');
  });
});

describe('RFC 3339 times', () => {
  it('parses UTC, offsets and fractions', () => {
    expect(parseRfc3339('2024-01-15T11:30:00Z')).toBe(Date.UTC(2024, 0, 15, 11, 30, 0));
    expect(parseRfc3339('2022-01-01T00:00:00+00:00')).toBe(Date.UTC(2022, 0, 1));
    expect(parseRfc3339('2024-01-15T13:30:00+02:00')).toBe(Date.UTC(2024, 0, 15, 11, 30));
    expect(parseRfc3339('2024-01-15T06:00:00-05:30')).toBe(Date.UTC(2024, 0, 15, 11, 30));
    expect(parseRfc3339('2024-01-15t11:30:00.57z')).toBe(Date.UTC(2024, 0, 15, 11, 30, 0, 570));
    expect(parseRfc3339('2024-02-29T00:00:00.123456789Z')).toBe(
      Date.UTC(2024, 1, 29, 0, 0, 0, 123),
    );
  });

  it('refuses forms and dates that Date.parse would accept or roll over', () => {
    for (const bad of [
      '2024-01-15',
      '2024-01-15 11:30:00Z',
      '2024-01-15T11:30:00',
      '2024-01-15T11:30Z',
      '2023-02-29T00:00:00Z',
      '2024-04-31T00:00:00Z',
      '2024-13-01T00:00:00Z',
      '2024-01-15T24:00:00Z',
      '2024-01-15T11:60:00Z',
      '2024-01-15T11:30:00+2:00',
      'Mon, 15 Jan 2024 11:30:00 GMT',
      '1705318200',
    ]) {
      expect(parseRfc3339(bad), bad).toBeUndefined();
    }
  });

  it('formats as UTC with whole seconds', () => {
    expect(formatRfc3339(Date.UTC(2024, 0, 15, 11, 30, 0, 999))).toBe('2024-01-15T11:30:00Z');
  });
});

describe('checkTimeClaims', () => {
  const iat = '2024-01-15T11:30:00Z';
  const exp = '2024-01-15T12:30:00Z';
  const at = (s: string): number => Date.parse(s);

  it('accepts a token inside its window and returns the times', () => {
    expect(checkTimeClaims({ iat, nbf: iat, exp }, at('2024-01-15T12:00:00Z'))).toEqual({
      iat: at(iat),
      nbf: at(iat),
      exp: at(exp),
    });
  });

  it('treats the exp instant itself as expired', () => {
    expect(() => checkTimeClaims({ exp }, at(exp) - 1)).not.toThrow();
    expectTokenError(
      () => checkTimeClaims({ exp }, at(exp)),
      'expired',
      'expired at 2024-01-15T12:30:00Z',
      'request a new one',
    );
  });

  it('rejects before nbf', () => {
    expectTokenError(
      () => checkTimeClaims({ nbf: iat, exp }, at(iat) - 1000),
      'not_yet_valid',
      'not valid before 2024-01-15T11:30:00Z',
      'clock',
    );
  });

  it('applies leeway to both ends', () => {
    expect(() =>
      checkTimeClaims({ nbf: iat, exp }, at(iat) - 30_000, { leewaySeconds: 60 }),
    ).not.toThrow();
    expect(() =>
      checkTimeClaims({ nbf: iat, exp }, at(exp) + 30_000, { leewaySeconds: 60 }),
    ).not.toThrow();
    expectTokenError(
      () => checkTimeClaims({ exp }, at(exp) + 60_000, { leewaySeconds: 60 }),
      'expired',
    );
    expect(() => checkTimeClaims({ exp }, 0, { leewaySeconds: -1 })).toThrow(RangeError);
  });

  it('requires exp', () => {
    expectTokenError(() => checkTimeClaims({ iat }, at(iat)), 'bad_claims', 'no "exp" claim');
  });

  it('rejects time claims that are not RFC 3339 strings', () => {
    expectTokenError(
      () => checkTimeClaims({ exp: 1705321800 }, 0),
      'bad_claims',
      '"exp" must be an RFC 3339',
      'got number',
    );
    expectTokenError(
      () => checkTimeClaims({ exp: '2024-01-15' }, 0),
      'bad_claims',
      '"exp"',
      '"2024-01-15"',
    );
    expectTokenError(() => checkTimeClaims({ exp, nbf: 'soon' }, 0), 'bad_claims', '"nbf"');
    expectTokenError(() => checkTimeClaims({ exp, iat: null }, 0), 'bad_claims', '"iat"');
  });
});

import { readFileSync } from 'node:fs';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../test/token-assert.ts';
import { decodeBase64Url, encodeBase64Url } from './base64url.ts';
import { verifyKeyFromPaserk } from './keys.ts';
import {
  assertUsableEd25519PublicKey,
  ed25519PrivateKeyFromSeed,
  ed25519PublicKeyFromRaw,
  ed25519RawPublicKey,
  ed25519RawSeed,
  paserkPid,
  paserkSid,
  parsePaserkPublic,
  parsePaserkSecret,
  toPaserkPublic,
  toPaserkSecret,
} from './paserk.ts';

interface PaserkVector {
  name: string;
  'expect-fail': boolean;
  key: string;
  paserk: string | null;
}

function loadVectors(file: string): PaserkVector[] {
  const url = new URL(`../../test/fixtures/paseto/${file}`, import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { tests: PaserkVector[] }).tests;
}

const hex = (h: string): Buffer => Buffer.from(h, 'hex');

describe('k4.public vectors', () => {
  const vectors = loadVectors('k4.public.json');
  const ok = vectors.filter((v) => !v['expect-fail']);
  const bad = vectors.filter((v) => v['expect-fail']);

  it.each(ok)('$name serialises to exactly the expected PASERK', (v) => {
    expect(toPaserkPublic(hex(v.key))).toBe(v.paserk);
  });

  it.each(ok)('$name PASERK body decodes to exactly the key bytes', (v) => {
    expect(decodeBase64Url(v.paserk!.slice('k4.public.'.length)).toString('hex')).toBe(v.key);
  });

  // The vectors test serialisation with arbitrary byte strings. Loading a key for verification
  // additionally demands a real, non-small-order curve point, which none of these are.
  const refusal: Record<string, string> = {
    'k4.public-1': 'small-order', // all-zero: the order-4 point (sqrt(-1), 0)
    'k4.public-2': 'not a point on the curve',
    'k4.public-3': 'not a point on the curve',
  };
  it.each(ok)(
    '$name is refused by parsePaserkPublic because its key is not a usable Ed25519 point',
    (v) => {
      expect(refusal[v.name], `no expectation recorded for ${v.name}`).toBeDefined();
      expectTokenError(() => parsePaserkPublic(v.paserk!), 'bad_key', refusal[v.name]!);
    },
  );

  it('parses back a real key exactly (the v4.json vector key)', () => {
    const key = '1eb9dbbbbc047c03fd70604e0071f0987e16b28b757225c11f00415d0e20b1a2';
    expect(parsePaserkPublic(toPaserkPublic(hex(key))).toString('hex')).toBe(key);
  });

  it.each(bad)('$name is rejected', (v) => {
    expectTokenError(() => toPaserkPublic(hex(v.key)), 'bad_key', '32-byte');
  });
});

describe('k4.secret vectors', () => {
  const vectors = loadVectors('k4.secret.json');
  const ok = vectors.filter((v) => !v['expect-fail']);
  const bad = vectors.filter((v) => v['expect-fail']);

  it.each(ok)('$name serialises to exactly the expected PASERK and parses back', (v) => {
    expect(toPaserkSecret(hex(v.key))).toBe(v.paserk);
    expect(parsePaserkSecret(v.paserk!).toString('hex')).toBe(v.key);
  });

  it.each(bad)('$name is rejected', (v) => {
    expectTokenError(() => toPaserkSecret(hex(v.key)), 'bad_key', '64-byte');
  });
});

describe('k4.pid vectors', () => {
  const vectors = loadVectors('k4.pid.json');
  it.each(vectors.filter((v) => !v['expect-fail']))('$name gives exactly the expected id', (v) => {
    expect(paserkPid(toPaserkPublic(hex(v.key)))).toBe(v.paserk);
  });
  it.each(vectors.filter((v) => v['expect-fail']))('$name is rejected', (v) => {
    expectTokenError(() => paserkPid(toPaserkPublic(hex(v.key))), 'bad_key');
  });
});

describe('k4.sid vectors', () => {
  const vectors = loadVectors('k4.sid.json');
  it.each(vectors.filter((v) => !v['expect-fail']))('$name gives exactly the expected id', (v) => {
    expect(paserkSid(toPaserkSecret(hex(v.key)))).toBe(v.paserk);
  });
  it.each(vectors.filter((v) => v['expect-fail']))('$name is rejected', (v) => {
    expectTokenError(() => paserkSid(toPaserkSecret(hex(v.key))), 'bad_key');
  });
});

describe('PASERK parsing is strict', () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  const raw = ed25519RawPublicKey(privateKey);
  const paserk = toPaserkPublic(raw);
  const secret = toPaserkSecret(Buffer.concat([ed25519RawSeed(privateKey), raw]));

  it('round-trips a generated key pair', () => {
    expect(parsePaserkPublic(paserk).equals(raw)).toBe(true);
    expect(parsePaserkSecret(secret).subarray(32).equals(raw)).toBe(true);
    expect(paserkPid(paserk)).toMatch(/^k4\.pid\.[A-Za-z0-9_-]{44}$/);
    expect(paserkSid(secret)).toMatch(/^k4\.sid\.[A-Za-z0-9_-]{44}$/);
  });

  it('rejects other versions and types, naming what it got', () => {
    expectTokenError(
      () => parsePaserkPublic(paserk.replace('k4.', 'k3.')),
      'bad_key',
      'expected a k4.public PASERK',
      'got a k3.public PASERK',
    );
    expectTokenError(() => parsePaserkPublic(secret), 'bad_key', 'got a k4.secret PASERK');
    expectTokenError(
      () => parsePaserkSecret(paserk),
      'bad_key',
      'expected a k4.secret PASERK',
      'got a k4.public PASERK',
    );
    expectTokenError(() => paserkPid(secret), 'bad_key', 'expected a k4.public PASERK');
    expectTokenError(() => paserkSid(paserk), 'bad_key', 'expected a k4.secret PASERK');
    expectTokenError(
      () => parsePaserkPublic('-----BEGIN PUBLIC KEY-----'),
      'bad_key',
      'expected a k4.public PASERK',
    );
    expectTokenError(() => parsePaserkPublic(undefined as never), 'bad_key', 'must be a string');
  });

  it('rejects the wrong length', () => {
    expectTokenError(
      () => parsePaserkPublic(`k4.public.${encodeBase64Url(raw.subarray(0, 31))}`),
      'bad_key',
      'must hold 32 bytes, got 31',
    );
    expectTokenError(
      () => parsePaserkPublic(`k4.public.${encodeBase64Url(Buffer.concat([raw, raw]))}`),
      'bad_key',
      'got 64',
    );
  });

  it('rejects padded or non-canonical base64url', () => {
    expectTokenError(() => parsePaserkPublic(`${paserk}=`), 'bad_key', 'padding');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(paserk.at(-1)!);
    expectTokenError(
      () => parsePaserkPublic(paserk.slice(0, -1) + alphabet[last ^ 1]),
      'bad_key',
      'not canonical',
    );
  });

  it('rejects a secret key whose public half does not belong to its seed', () => {
    const otherRaw = ed25519RawPublicKey(generateKeyPairSync('ed25519').privateKey);
    const spliced = Buffer.concat([ed25519RawSeed(privateKey), otherRaw]);
    expectTokenError(() => toPaserkSecret(spliced), 'bad_key', 'inconsistent');
    expectTokenError(
      () => parsePaserkSecret(`k4.secret.${encodeBase64Url(spliced)}`),
      'bad_key',
      'inconsistent',
    );
  });

  it('builds KeyObjects that match node:crypto key generation', () => {
    const seed = ed25519RawSeed(privateKey);
    const rebuilt = ed25519PrivateKeyFromSeed(seed);
    expect(ed25519RawPublicKey(rebuilt).equals(raw)).toBe(true);
    expect(ed25519PublicKeyFromRaw(raw).equals(createPublicKey(privateKey))).toBe(true);
    expectTokenError(
      () => ed25519PrivateKeyFromSeed(seed.subarray(1)),
      'bad_key',
      '32 bytes, got 31',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Small-order keys. The list below is written out independently of the implementation and is
// checked here with separate point arithmetic, so a typo on either side would show.

const P = 2n ** 255n - 19n;
const modp = (a: bigint): bigint => ((a % P) + P) % P;
function powp(b: bigint, e: bigint): bigint {
  let r = 1n;
  b = modp(b);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}
const inv = (a: bigint): bigint => powp(a, P - 2n);
const D = modp(-121665n * inv(121666n));
const SQRT_M1 = powp(2n, (P - 1n) / 4n);

/** RFC 8032 §5.1.3 point decoding; undefined when not a valid canonical point. */
function decodePoint(bytes: Buffer): [bigint, bigint] | undefined {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(bytes[i]!);
  const sign = y >> 255n;
  y &= (1n << 255n) - 1n;
  if (y >= P) return undefined;
  const u = modp(y * y - 1n);
  const v = modp(D * y * y + 1n);
  let x = modp(u * inv(v));
  let r = powp(x, (P + 3n) / 8n);
  if (modp(r * r - x) !== 0n) r = modp(r * SQRT_M1);
  if (modp(r * r - x) !== 0n) return undefined;
  x = r;
  if (x === 0n && sign === 1n) return undefined;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y];
}

function addPoints([x1, y1]: [bigint, bigint], [x2, y2]: [bigint, bigint]): [bigint, bigint] {
  const t = modp(D * x1 * x2 * y1 * y2);
  return [modp((x1 * y2 + y1 * x2) * inv(1n + t)), modp((y1 * y2 + x1 * x2) * inv(1n - t))];
}

const SMALL_ORDER_POINTS = [
  '0100000000000000000000000000000000000000000000000000000000000000', // identity, order 1
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // (0, -1), order 2
  '0000000000000000000000000000000000000000000000000000000000000000', // order 4
  '0000000000000000000000000000000000000000000000000000000000000080', // order 4
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa', // order 8
];

/** Non-canonical encodings: y >= p for the y values below 19 (0 and 1), and sign-bit variants. */
const NON_CANONICAL_SMALL_ORDER = [
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p     (≡ 0)
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', // y = p,    sign set
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p + 1 (≡ 1)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', // y = p + 1, sign set
  '0100000000000000000000000000000000000000000000000000000000000080', // identity with x = "-0"
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', // (0, -1) with x = "-0"
];

describe('small-order public keys', () => {
  it('the list holds 8 distinct valid points whose order divides 8', () => {
    expect(new Set(SMALL_ORDER_POINTS).size).toBe(8);
    for (const h of SMALL_ORDER_POINTS) {
      let point = decodePoint(hex(h));
      expect(point, h).toBeDefined();
      for (let i = 0; i < 3; i++) point = addPoints(point!, point!);
      expect(point, h).toEqual([0n, 1n]);
    }
  });

  it('the non-canonical variants are not valid canonical encodings', () => {
    for (const h of NON_CANONICAL_SMALL_ORDER) expect(decodePoint(hex(h)), h).toBeUndefined();
  });

  it.each(SMALL_ORDER_POINTS)('refuses %s (canonical)', (h) => {
    expectTokenError(() => parsePaserkPublic(toPaserkPublic(hex(h))), 'bad_key', 'small-order');
    expectTokenError(() => ed25519PublicKeyFromRaw(hex(h)), 'bad_key', 'small-order');
    expectTokenError(() => verifyKeyFromPaserk(toPaserkPublic(hex(h))), 'bad_key', 'small-order');
  });

  it.each(SMALL_ORDER_POINTS)('refuses %s with the sign bit flipped', (h) => {
    const flipped = hex(h);
    flipped[31]! ^= 0x80;
    expectTokenError(() => parsePaserkPublic(toPaserkPublic(flipped)), 'bad_key');
  });

  it.each(NON_CANONICAL_SMALL_ORDER)('refuses %s (non-canonical)', (h) => {
    expectTokenError(() => parsePaserkPublic(toPaserkPublic(hex(h))), 'bad_key');
  });

  it('names the first fault of each non-canonical encoding: y >= p before small order', () => {
    const [yIsP, yIsPSigned, yIsP1, yIsP1Signed, identityMinusZero, minusOneMinusZero] =
      NON_CANONICAL_SMALL_ORDER.map((h) => hex(h));
    for (const bytes of [yIsP!, yIsPSigned!, yIsP1!, yIsP1Signed!])
      expectTokenError(
        () => assertUsableEd25519PublicKey(bytes),
        'bad_key',
        'not canonically encoded',
      );
    for (const bytes of [identityMinusZero!, minusOneMinusZero!])
      expectTokenError(() => assertUsableEd25519PublicKey(bytes), 'bad_key', 'small-order');
  });

  it('agrees with the independent RFC 8032 decoding on random and edge encodings', () => {
    // The refusal holds exactly when the bytes are not a canonical point, or when the point
    // times 8 is the identity (its order divides 8).
    const samples = [...SMALL_ORDER_POINTS, ...NON_CANONICAL_SMALL_ORDER].map((h) => hex(h));
    for (let i = 0; i < 160; i++) samples.push(randomBytes(32));
    let accepted = 0;
    for (const bytes of samples) {
      let point = decodePoint(bytes);
      if (point) for (let i = 0; i < 3; i++) point = addPoints(point, point);
      const usable = point !== undefined && !(point[0] === 0n && point[1] === 1n);
      let threw = false;
      try {
        assertUsableEd25519PublicKey(bytes);
      } catch {
        threw = true;
      }
      expect(threw, bytes.toString('hex')).toBe(!usable);
      if (usable) accepted++;
    }
    expect(accepted).toBeGreaterThan(40); // about half of random y values are on the curve
  });

  it('refuses every y >= p, small order or not', () => {
    for (let k = 0; k < 19; k++) {
      const y = P + BigInt(k);
      const bytes = Buffer.alloc(32);
      for (let i = 0; i < 32; i++) bytes[i] = Number((y >> BigInt(8 * i)) & 0xffn);
      expectTokenError(
        () => assertUsableEd25519PublicKey(bytes),
        'bad_key',
        'not canonically encoded',
      );
    }
  });

  it('refuses an encoding that is not a point on the curve', () => {
    let y = 2n;
    while (
      decodePoint(Buffer.from(y.toString(16).padStart(64, '0'), 'hex').reverse()) !== undefined
    )
      y++;
    const bytes = Buffer.from(y.toString(16).padStart(64, '0'), 'hex').reverse();
    expectTokenError(
      () => parsePaserkPublic(toPaserkPublic(bytes)),
      'bad_key',
      'not a point on the curve',
    );
  });

  it('accepts ordinary keys, including the official vector key', () => {
    for (let i = 0; i < 20; i++) {
      expect(() =>
        assertUsableEd25519PublicKey(
          ed25519RawPublicKey(generateKeyPairSync('ed25519').privateKey),
        ),
      ).not.toThrow();
    }
    expect(() =>
      assertUsableEd25519PublicKey(
        hex('1eb9dbbbbc047c03fd70604e0071f0987e16b28b757225c11f00415d0e20b1a2'),
      ),
    ).not.toThrow();
  });

  it('a forged token for the identity key cannot be verified through our API, because the key cannot be loaded', () => {
    // For A = identity, R = B (the base point) and S = 1 satisfy [S]B = R + [k]A for every
    // message and every k: a universal forgery that needs no secret. (The OpenSSL in Node 24
    // happens to refuse it as well; other builds need not, so we do not rely on that.)
    const identity = hex(SMALL_ORDER_POINTS[0]!);
    const basePoint = hex('5866666666666666666666666666666666666666666666666666666666666666');
    const B = decodePoint(basePoint)!;
    expect(addPoints(B, decodePoint(identity)!)).toEqual(B); // R + [k]A = B + identity = B = [1]B
    const one = Buffer.alloc(32);
    one[0] = 1;
    const message = Buffer.from('{"typ":"bp.lease/1","features":["everything"]}');
    const footer = Buffer.from(JSON.stringify({ kid: paserkPid(toPaserkPublic(identity)) }));
    const forged = `v4.public.${encodeBase64Url(Buffer.concat([message, basePoint, one]))}.${encodeBase64Url(footer)}`;
    expect(forged.split('.').length).toBe(4);
    // Every way our code turns bytes into a verification key refuses the identity, so there is
    // no KeyObject to hand to verifyV4Public. clients/typescript/test/verify.test.ts runs the forged token
    // through verifyLeaseToken end to end.
    expectTokenError(() => verifyKeyFromPaserk(toPaserkPublic(identity)), 'bad_key', 'small-order');
    expectTokenError(() => ed25519PublicKeyFromRaw(identity), 'bad_key', 'small-order');
    expectTokenError(() => parsePaserkPublic(toPaserkPublic(identity)), 'bad_key', 'small-order');
  });
});

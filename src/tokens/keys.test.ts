import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TokenError } from './errors.ts';
import { generateSigningKey, signingKeyFromPaserk, verifyKeyFromPaserk } from './keys.ts';
import { paserkPid } from './paserk.ts';
import { signV4Public, verifyV4Public } from './paseto.ts';

describe('signing keys', () => {
  it('generates a key whose kid is the k4.pid of its public PASERK', () => {
    const key = generateSigningKey();
    expect(key.publicPaserk).toMatch(/^k4\.public\.[A-Za-z0-9_-]{43}$/);
    expect(key.kid).toBe(paserkPid(key.publicPaserk));
    expect(key.secretPaserk()).toMatch(/^k4\.secret\.[A-Za-z0-9_-]{86}$/);
  });

  it('generates a different key each time', () => {
    expect(generateSigningKey().kid).not.toBe(generateSigningKey().kid);
  });

  it('reloads from its secret PASERK to the same key, signing identical tokens', () => {
    const key = generateSigningKey();
    const again = signingKeyFromPaserk(key.secretPaserk());
    expect(again.kid).toBe(key.kid);
    expect(again.publicPaserk).toBe(key.publicPaserk);
    const msg = Buffer.from('{"a":1}');
    expect(signV4Public(again.secretKey, msg)).toBe(signV4Public(key.secretKey, msg));
  });

  it('produces a verify key that checks its tokens', () => {
    const key = generateSigningKey();
    const verifier = verifyKeyFromPaserk(key.publicPaserk);
    expect(verifier.kid).toBe(key.kid);
    const token = signV4Public(key.secretKey, Buffer.from('hi'));
    expect(verifyV4Public(verifier.publicKey, token).message.toString()).toBe('hi');
  });

  it('never writes the secret key when serialised or inspected', () => {
    const key = generateSigningKey();
    const secretBody = key.secretPaserk().slice('k4.secret.'.length);
    const json = JSON.stringify(key);
    expect(json).not.toContain(secretBody);
    expect(json).not.toContain('k4.secret');
    expect(inspect(key, { depth: 5 })).not.toContain(secretBody);
  });

  it('refuses a public PASERK where a secret one is expected, and the reverse', () => {
    const key = generateSigningKey();
    expect(() => signingKeyFromPaserk(key.publicPaserk)).toThrow(TokenError);
    expect(() => verifyKeyFromPaserk(key.secretPaserk())).toThrow(
      /expected a k4\.public PASERK, got a k4\.secret PASERK/,
    );
  });
});

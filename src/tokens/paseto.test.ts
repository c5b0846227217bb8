import { readFileSync } from 'node:fs';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { expectTokenError } from '../../test/token-assert.ts';
import type { TokenErrorCode } from './errors.ts';
import { decodeBase64Url, encodeBase64Url } from './base64url.ts';
import { ed25519PrivateKeyFromSeed, ed25519PublicKeyFromRaw } from './paserk.ts';
import {
  MAX_TOKEN_LENGTH,
  decodeFooterUnverified,
  pae,
  signV4Public,
  signV4PublicAsync,
  verifyV4Public,
} from './paseto.ts';

interface V4Vector {
  name: string;
  'expect-fail': boolean;
  'public-key'?: string;
  'secret-key'?: string;
  'secret-key-seed'?: string;
  token: string;
  payload: string | null;
  footer: string;
  'implicit-assertion': string;
}

const vectors = (
  JSON.parse(
    readFileSync(new URL('../../test/fixtures/paseto/v4.json', import.meta.url), 'utf8'),
  ) as {
    tests: V4Vector[];
  }
).tests;

const signingCases = vectors.filter((v) => v.name.startsWith('4-S-'));
const failureCases = vectors.filter((v) => v.name.startsWith('4-F-'));
const localCases = vectors.filter((v) => v.name.startsWith('4-E-'));

// The 4-F cases carry no public key of their own; the vector key pair is the one they target.
const vectorKeys = signingCases[0]!;
const vectorPublicKey = ed25519PublicKeyFromRaw(Buffer.from(vectorKeys['public-key']!, 'hex'));
const vectorSecretKey = ed25519PrivateKeyFromSeed(
  Buffer.from(vectorKeys['secret-key-seed']!, 'hex'),
);

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('official v4 vectors', () => {
  it('has the expected number of cases', () => {
    expect(signingCases.length).toBe(3);
    expect(failureCases.length).toBe(5);
    expect(localCases.length).toBeGreaterThan(0);
  });

  it.each(signingCases)('$name verifies to exactly the payload and footer', (v) => {
    const publicKey = ed25519PublicKeyFromRaw(Buffer.from(v['public-key']!, 'hex'));
    const { message, footer } = verifyV4Public(publicKey, v.token, utf8(v['implicit-assertion']));
    expect(message.toString('utf8')).toBe(v.payload);
    expect(footer.toString('utf8')).toBe(v.footer);
  });

  it.each(signingCases)(
    '$name is reproduced exactly by signing (Ed25519 is deterministic)',
    (v) => {
      const secretKey = ed25519PrivateKeyFromSeed(Buffer.from(v['secret-key-seed']!, 'hex'));
      expect(
        signV4Public(secretKey, utf8(v.payload!), utf8(v.footer), utf8(v['implicit-assertion'])),
      ).toBe(v.token);
    },
  );

  it.each(signingCases)('$name is reproduced exactly by off-thread signing', async (v) => {
    const secretKey = ed25519PrivateKeyFromSeed(Buffer.from(v['secret-key-seed']!, 'hex'));
    await expect(
      signV4PublicAsync(secretKey, utf8(v.payload!), utf8(v.footer), utf8(v['implicit-assertion'])),
    ).resolves.toBe(v.token);
  });

  it.each(signingCases)('$name secret key in the vector is seed || public key', (v) => {
    expect(v['secret-key']).toBe(v['secret-key-seed']! + v['public-key']!);
  });

  const expectedFailure: Record<string, TokenErrorCode> = {
    '4-F-1': 'wrong_purpose', // v4.local token
    '4-F-2': 'bad_signature', // v4.public token that was not signed by this key
    '4-F-3': 'wrong_purpose', // v3.local token
    '4-F-4': 'wrong_purpose', // v4.local token
    '4-F-5': 'wrong_purpose', // v4.local token
  };

  it.each(failureCases)('$name is rejected', (v) => {
    expect(v['expect-fail']).toBe(true);
    const code = expectedFailure[v.name];
    expect(code, `no expectation recorded for ${v.name}`).toBeDefined();
    expectTokenError(
      () => verifyV4Public(vectorPublicKey, v.token, utf8(v['implicit-assertion'])),
      code!,
    );
    // Also without the implicit assertion, in case it was what made it fail.
    expectTokenError(() => verifyV4Public(vectorPublicKey, v.token), code!);
  });

  it.each(localCases)(
    '$name (v4.local) is refused by the public verifier as the wrong purpose',
    (v) => {
      expectTokenError(
        () => verifyV4Public(vectorPublicKey, v.token, utf8(v['implicit-assertion'])),
        'wrong_purpose',
        'v4.local',
        'only v4.public',
      );
    },
  );
});

describe('PAE', () => {
  // Examples from the PASETO spec, Common.md.
  it('encodes the empty list as LE64(0)', () => {
    expect(pae([]).toString('hex')).toBe('0000000000000000');
  });

  it('encodes one empty piece as LE64(1) || LE64(0)', () => {
    expect(pae([new Uint8Array(0)]).toString('hex')).toBe('0100000000000000' + '0000000000000000');
  });

  it('encodes ["test"] with its length prefix', () => {
    expect(pae([utf8('test')]).toString('hex')).toBe(
      '0100000000000000' + '0400000000000000' + utf8('test').toString('hex'),
    );
  });

  it('does not let piece boundaries move (["ab","c"] differs from ["a","bc"])', () => {
    expect(pae([utf8('ab'), utf8('c')]).equals(pae([utf8('a'), utf8('bc')]))).toBe(false);
  });
});

describe('v4.public sign and verify', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  // 301 bytes: not a multiple of 3 with the signature, so the last base64 character has spare bits.
  const message = utf8(JSON.stringify({ data: 'x'.repeat(280), n: 1 }));
  const footer = utf8('{"kid":"k4.pid.test"}');
  const token = signV4Public(privateKey, message, footer);
  const bareToken = signV4Public(privateKey, message);
  const [, , payloadPart, footerPart] = token.split('.') as [string, string, string, string];

  it('round-trips message and footer', () => {
    const out = verifyV4Public(publicKey, token);
    expect(out.message.equals(message)).toBe(true);
    expect(out.footer.equals(footer)).toBe(true);
  });

  it('writes no footer segment when the footer is empty', () => {
    expect(bareToken.split('.').length).toBe(3);
    expect(verifyV4Public(publicKey, bareToken).footer.length).toBe(0);
  });

  it('signs off-thread to the same token as on-thread', async () => {
    await expect(signV4PublicAsync(privateKey, message, footer)).resolves.toBe(token);
  });

  it('signs off-thread what was passed, even if the caller reuses its buffer at once', async () => {
    const reused = Buffer.from(message);
    const pending = signV4PublicAsync(privateKey, reused, footer);
    reused.fill(0x41);
    await expect(pending).resolves.toBe(token);
  });

  it('rejects a public key for signing and a private key for verifying', async () => {
    expectTokenError(() => signV4Public(publicKey, message), 'bad_key', 'Ed25519 private key');
    expectTokenError(
      () => verifyV4Public(privateKey as never, token),
      'bad_key',
      'Ed25519 public key',
    );
    await expect(signV4PublicAsync(publicKey, message)).rejects.toMatchObject({ code: 'bad_key' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expectTokenError(() => verifyV4Public(rsa.publicKey, token), 'bad_key', 'rsa');
  });

  it('rejects a token signed by another key', () => {
    expectTokenError(
      () => verifyV4Public(other.publicKey, token),
      'bad_signature',
      'does not verify',
    );
  });

  it('rejects a tampered payload byte', () => {
    const body = decodeBase64Url(payloadPart);
    body[10]! ^= 0x01;
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${encodeBase64Url(body)}.${footerPart}`),
      'bad_signature',
      'altered',
    );
  });

  it('rejects a tampered signature byte', () => {
    const body = decodeBase64Url(payloadPart);
    body[body.length - 1]! ^= 0x80;
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${encodeBase64Url(body)}.${footerPart}`),
      'bad_signature',
    );
  });

  it('rejects a tampered footer', () => {
    const forged = `v4.public.${payloadPart}.${encodeBase64Url(utf8('{"kid":"k4.pid.evil"}'))}`;
    expectTokenError(() => verifyV4Public(publicKey, forged), 'bad_signature');
  });

  it('rejects a token whose footer was removed', () => {
    expectTokenError(() => verifyV4Public(publicKey, `v4.public.${payloadPart}`), 'bad_signature');
  });

  it('rejects a wrong implicit assertion and a missing one', () => {
    const bound = signV4Public(privateKey, message, footer, utf8('{"tenant":"a"}'));
    expect(verifyV4Public(publicKey, bound, utf8('{"tenant":"a"}')).message.equals(message)).toBe(
      true,
    );
    expectTokenError(
      () => verifyV4Public(publicKey, bound, utf8('{"tenant":"b"}')),
      'bad_signature',
      'implicit assertion',
    );
    expectTokenError(() => verifyV4Public(publicKey, bound), 'bad_signature', 'implicit assertion');
    // And one that is supplied when the token was signed without any.
    expectTokenError(() => verifyV4Public(publicKey, token, utf8('x')), 'bad_signature');
  });

  it('rejects "=" padding in the payload and in the footer', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${payloadPart}=.${footerPart}`),
      'malformed',
      'token payload',
      'padding',
    );
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${payloadPart}.${footerPart}=`),
      'malformed',
      'token footer',
      'padding',
    );
  });

  it('rejects a non-canonical last payload character', () => {
    expect(payloadPart.length % 4).not.toBe(0);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(payloadPart.at(-1)!);
    const altered = payloadPart.slice(0, -1) + alphabet[last | 1];
    // A lenient decoder reads the same bytes, which is exactly why this must be refused.
    expect(Buffer.from(altered, 'base64url').equals(Buffer.from(payloadPart, 'base64url'))).toBe(
      true,
    );
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${altered}.${footerPart}`),
      'malformed',
      'not canonical',
    );
  });

  it('rejects "+" and "/" from the standard base64 alphabet', () => {
    const plus = `v4.public.+${payloadPart.slice(1)}.${footerPart}`;
    const slash = `v4.public.${payloadPart}./${footerPart.slice(1)}`;
    expectTokenError(
      () => verifyV4Public(publicKey, plus),
      'malformed',
      '"+"',
      'base64url uses "-" and "_"',
    );
    expectTokenError(() => verifyV4Public(publicKey, slash), 'malformed', '"/"');
  });

  it('rejects an empty footer segment (a trailing dot after the payload)', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, `${bareToken}.`),
      'malformed',
      'empty footer segment',
    );
  });

  it('rejects a trailing dot after the footer and any extra segment', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, `${token}.`),
      'malformed',
      'too many "." segments',
    );
    expectTokenError(
      () => verifyV4Public(publicKey, `${token}.AAAA`),
      'malformed',
      'too many "." segments',
    );
  });

  it('rejects a payload shorter than a signature', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, 'v4.public.'),
      'malformed',
      '0 bytes',
      '64-byte signature',
    );
    expectTokenError(
      () => verifyV4Public(publicKey, `v4.public.${encodeBase64Url(Buffer.alloc(63))}`),
      'malformed',
      '63 bytes',
    );
  });

  it('accepts an empty message (the body is just the signature)', () => {
    const t = signV4Public(privateKey, new Uint8Array(0));
    expect(verifyV4Public(publicKey, t).message.length).toBe(0);
  });

  it('rejects other versions and purposes by header', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, token.replace('v4.public.', 'v4.local.')),
      'wrong_purpose',
      'v4.local',
    );
    expectTokenError(
      () => verifyV4Public(publicKey, token.replace('v4.public.', 'v2.public.')),
      'wrong_purpose',
      'v2.public',
    );
    expectTokenError(
      () => verifyV4Public(publicKey, token.replace('v4.public.', 'v4.secret.')),
      'wrong_purpose',
      'does not exist',
    );
  });

  it('rejects text that is not a PASETO token at all', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, 'eyJhbGciOiJFZERTQSJ9.e30.sig'),
      'malformed',
      'does not start with "v4.public."',
    );
    expectTokenError(() => verifyV4Public(publicKey, 'V4.PUBLIC.' + payloadPart), 'malformed');
    expectTokenError(() => verifyV4Public(publicKey, ''), 'malformed');
    expectTokenError(() => verifyV4Public(publicKey, 42 as never), 'malformed', 'must be a string');
  });

  it('rejects an oversized token before looking at anything else', () => {
    expectTokenError(
      () => verifyV4Public(publicKey, 'v4.local.' + 'A'.repeat(MAX_TOKEN_LENGTH)),
      'malformed',
      'over the 65536 limit',
    );
    expectTokenError(
      () => decodeFooterUnverified('x'.repeat(MAX_TOKEN_LENGTH + 1)),
      'malformed',
      'over the 65536 limit',
    );
  });

  it('accepts a token right at the size limit', () => {
    const overhead = 'v4.public.'.length + Math.ceil(((64 + 3) * 4) / 3);
    const big = Buffer.alloc(Math.floor(((MAX_TOKEN_LENGTH - overhead) * 3) / 4), 0x61);
    const t = signV4Public(privateKey, big);
    expect(t.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
    expect(verifyV4Public(publicKey, t).message.equals(big)).toBe(true);
  });

  it('reads the footer before verification and leaves the payload alone', () => {
    expect(decodeFooterUnverified(token).equals(footer)).toBe(true);
    expect(decodeFooterUnverified(bareToken).length).toBe(0);
    // Only the structure and the footer are checked here; the payload is verify's job.
    expect(decodeFooterUnverified(`v4.public.!!.${footerPart}`).equals(footer)).toBe(true);
    expectTokenError(
      () => decodeFooterUnverified(`v4.public.${payloadPart}.${footerPart}=`),
      'malformed',
      'token footer',
    );
    expectTokenError(
      () => decodeFooterUnverified(`${bareToken}.`),
      'malformed',
      'empty footer segment',
    );
    expectTokenError(() => decodeFooterUnverified('v4.local.abc.def'), 'wrong_purpose');
  });

  it('verifies tokens from a key loaded by PEM (interoperates with keys made elsewhere)', () => {
    const pem = publicKey.export({ format: 'pem', type: 'spki' });
    expect(verifyV4Public(createPublicKey(pem), token).message.equals(message)).toBe(true);
  });

  it('uses the vector key pair consistently', () => {
    const t = signV4Public(vectorSecretKey, utf8('{}'));
    expect(verifyV4Public(vectorPublicKey, t).message.toString()).toBe('{}');
  });
});

import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import {
  ed25519PrivateKeyFromSeed,
  ed25519PublicKeyFromRaw,
  ed25519RawPublicKey,
  ed25519RawSeed,
  paserkPid,
  parsePaserkPublic,
  parsePaserkSecret,
  toPaserkPublic,
  toPaserkSecret,
} from './paserk.ts';

/**
 * A token-signing key. The secret PASERK is behind a method so that logging or JSON-serialising
 * the object never writes the secret out (KeyObjects themselves serialise as `{}`).
 */
export interface SigningKey {
  secretKey: KeyObject;
  publicKey: KeyObject;
  /** `k4.public.…` — what clients are given to verify tokens. */
  publicPaserk: string;
  /** `k4.pid.…` of publicPaserk — the `kid` in token footers. */
  kid: string;
  /** `k4.secret.…` — for storing the key; handle as a secret. */
  secretPaserk(): string;
}

/** A key that can only verify tokens. */
export interface VerifyKey {
  publicKey: KeyObject;
  publicPaserk: string;
  kid: string;
}

function buildSigningKey(secretKey: KeyObject, seed: Buffer, rawPublic: Buffer): SigningKey {
  const publicKey = ed25519PublicKeyFromRaw(rawPublic);
  const publicPaserk = toPaserkPublic(rawPublic);
  const secretBytes = Buffer.concat([seed, rawPublic]);
  return {
    secretKey,
    publicKey,
    publicPaserk,
    kid: paserkPid(publicPaserk),
    secretPaserk: () => toPaserkSecret(secretBytes),
  };
}

/** Generates a fresh Ed25519 signing key (OpenSSL CSPRNG). */
export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return buildSigningKey(privateKey, ed25519RawSeed(privateKey), ed25519RawPublicKey(privateKey));
}

/**
 * Loads a signing key from its `k4.secret.…` PASERK (checks that the public half matches the seed).
 *
 * @throws TokenError `bad_key`
 */
export function signingKeyFromPaserk(secretPaserk: string): SigningKey {
  const raw = parsePaserkSecret(secretPaserk);
  const seed = raw.subarray(0, 32);
  return buildSigningKey(
    ed25519PrivateKeyFromSeed(seed),
    Buffer.from(seed),
    Buffer.from(raw.subarray(32)),
  );
}

/**
 * Loads a verification key from its `k4.public.…` PASERK, refusing small-order and malformed
 * keys, and computes its kid.
 *
 * @throws TokenError `bad_key`
 */
export function verifyKeyFromPaserk(publicPaserk: string): VerifyKey {
  const raw = parsePaserkPublic(publicPaserk);
  return { publicKey: ed25519PublicKeyFromRaw(raw), publicPaserk, kid: paserkPid(publicPaserk) };
}

import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, equalBytes } from '@noble/curves/utils.js';
import { blake2b } from '@noble/hashes/blake2.js';
import { decodeBase64Url, encodeBase64Url } from './base64url.ts';
import { TokenError, preview } from './errors.ts';

const PUBLIC_PREFIX = 'k4.public.';
const SECRET_PREFIX = 'k4.secret.';
const PID_PREFIX = 'k4.pid.';
const SID_PREFIX = 'k4.sid.';

// DER wrappers that turn raw Ed25519 bytes into the SPKI / PKCS#8 structures node:crypto imports.
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

// ---------------------------------------------------------------------------------------------
// Ed25519 public key screening.
//
// A public key that is a small-order point (or the identity) makes verification meaningless: for
// the identity key, R = identity and S = 0 is a valid signature on every message, and OpenSSL (so
// node:crypto) accepts it. Such keys can only come from an attacker or a broken tool, so they are
// refused when loaded, as are encodings that are not canonical (y >= p) or not on the curve.
// The curve arithmetic is @noble/curves' (audited); this function only orders the refusals so that
// each bad key gets the message that names its real fault.

const { Point } = ed25519;
const FIELD_P = Point.Fp.ORDER;
const Y_MASK = (1n << 255n) - 1n;

/**
 * Throws unless `raw` is a canonical encoding of an Ed25519 point that is on the curve and not of
 * small order (RFC 8032 §5.1.3 decoding, plus the small-order refusal RFC 8032 leaves to the
 * caller). Exported for the key helpers and tests; parsePaserkPublic calls it.
 *
 * Checked in this order, so each refusal names the first fault: the length; y >= p (not
 * canonical); not a point on the curve; a point whose order divides 8 (the identity, the
 * all-zero key and the six others), whatever the sign bit says; last, any other encoding that
 * does not read back byte for byte (x = 0 with the sign bit set, which only the small-order
 * y = ±1 can have, so this guard is not expected to fire).
 *
 * @throws TokenError `bad_key`
 */
export function assertUsableEd25519PublicKey(raw: Uint8Array): void {
  if (raw.byteLength !== 32) {
    throw new TokenError('bad_key', `Ed25519 public key must be 32 bytes, got ${raw.byteLength}`);
  }
  if ((bytesToNumberLE(raw) & Y_MASK) >= FIELD_P) {
    throw new TokenError(
      'bad_key',
      'Ed25519 public key is not canonically encoded (y >= 2^255-19); no real key looks like this',
    );
  }
  let point: InstanceType<typeof Point>;
  try {
    // ZIP-215 decoding accepts x = 0 with the sign bit set, so those (small-order) encodings reach
    // the small-order refusal below rather than being called "not on the curve".
    point = Point.fromBytes(raw, true);
  } catch (err) {
    throw new TokenError('bad_key', 'Ed25519 public key is not a point on the curve', {
      cause: err,
    });
  }
  if (point.isSmallOrder()) {
    throw new TokenError(
      'bad_key',
      'Ed25519 public key is a small-order point (such as the identity or the all-zero key); signatures under it can be forged, so it is refused',
    );
  }
  if (!equalBytes(point.toBytes(), raw)) {
    throw new TokenError('bad_key', 'Ed25519 public key encodes x = 0 with the sign bit set');
  }
}

// ---------------------------------------------------------------------------------------------
// KeyObject helpers.

/**
 * Builds a node:crypto Ed25519 public KeyObject from its raw 32 bytes, after the small-order and
 * canonical-encoding checks (so no path into node:crypto skips them).
 *
 * @throws TokenError `bad_key`
 */
export function ed25519PublicKeyFromRaw(raw32: Uint8Array): KeyObject {
  assertUsableEd25519PublicKey(raw32);
  return createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, raw32]),
    format: 'der',
    type: 'spki',
  });
}

/**
 * Builds a node:crypto Ed25519 private KeyObject from the 32-byte seed (RFC 8032 private key).
 *
 * @throws TokenError `bad_key`
 */
export function ed25519PrivateKeyFromSeed(seed32: Uint8Array): KeyObject {
  if (seed32.byteLength !== 32)
    throw new TokenError('bad_key', `Ed25519 seed must be 32 bytes, got ${seed32.byteLength}`);
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed32]),
    format: 'der',
    type: 'pkcs8',
  });
}

/** Raw 32-byte public key of an Ed25519 KeyObject (public or private). */
export function ed25519RawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') {
    throw new TokenError(
      'bad_key',
      `expected an Ed25519 key, got ${pub.asymmetricKeyType ?? 'a symmetric key'}`,
    );
  }
  return pub.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519_PREFIX.length);
}

/** Raw 32-byte seed of an Ed25519 private KeyObject. */
export function ed25519RawSeed(key: KeyObject): Buffer {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new TokenError('bad_key', 'expected an Ed25519 private key');
  }
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_ED25519_PREFIX.length);
}

function publicKeyFromSeed(seed32: Uint8Array): Buffer {
  return ed25519RawPublicKey(ed25519PrivateKeyFromSeed(seed32));
}

// ---------------------------------------------------------------------------------------------
// PASERK serialisation.

function decodePaserkBody(s: string, prefix: string, bytes: number): Buffer {
  if (typeof s !== 'string')
    throw new TokenError('bad_key', `PASERK must be a string, got ${typeof s}`);
  if (!s.startsWith(prefix)) {
    const m = /^(k\d+)\.([a-z-]+)\./.exec(s);
    const found = m ? `a ${m[1]}.${m[2]} PASERK` : preview(s, 16);
    throw new TokenError('bad_key', `expected a ${prefix.slice(0, -1)} PASERK, got ${found}`);
  }
  let raw: Buffer;
  try {
    raw = decodeBase64Url(s.slice(prefix.length), `${prefix.slice(0, -1)} PASERK`);
  } catch (err) {
    throw new TokenError('bad_key', (err as Error).message, { cause: err });
  }
  if (raw.length !== bytes) {
    throw new TokenError(
      'bad_key',
      `${prefix.slice(0, -1)} PASERK must hold ${bytes} bytes, got ${raw.length}`,
    );
  }
  return raw;
}

/**
 * Serialises a raw Ed25519 public key as `k4.public.<base64url>`.
 *
 * Only the length is checked: serialising is harmless, and the official vectors serialise the
 * all-zero key. Loading a key for verification goes through {@link parsePaserkPublic}, which
 * refuses small-order keys.
 *
 * @throws TokenError `bad_key` unless the key is 32 bytes
 */
export function toPaserkPublic(raw32: Uint8Array): string {
  if (raw32.byteLength !== 32) {
    throw new TokenError(
      'bad_key',
      `k4.public PASERK needs a 32-byte Ed25519 public key, got ${raw32.byteLength} bytes`,
    );
  }
  return PUBLIC_PREFIX + encodeBase64Url(raw32);
}

/**
 * Parses `k4.public.<base64url>` into the raw 32-byte key, refusing anything unsafe to verify
 * with: other versions/types, non-canonical base64url, wrong length, non-canonical or off-curve
 * points, and small-order points (including the all-zero key).
 *
 * @throws TokenError `bad_key`
 */
export function parsePaserkPublic(s: string): Buffer {
  const raw = decodePaserkBody(s, PUBLIC_PREFIX, 32);
  assertUsableEd25519PublicKey(raw);
  return raw;
}

function assertConsistentSecret(raw64: Uint8Array): void {
  const derived = publicKeyFromSeed(raw64.subarray(0, 32));
  if (!derived.equals(raw64.subarray(32))) {
    throw new TokenError(
      'bad_key',
      'k4.secret key is inconsistent: its last 32 bytes are not the public key of its first 32 (seed); the key is corrupt or was assembled from two keys',
    );
  }
}

/**
 * Serialises a 64-byte Ed25519 secret key (seed || public key) as `k4.secret.<base64url>`.
 *
 * @throws TokenError `bad_key` on a wrong length or when the public half does not match the seed
 */
export function toPaserkSecret(raw64: Uint8Array): string {
  if (raw64.byteLength !== 64) {
    throw new TokenError(
      'bad_key',
      `k4.secret PASERK needs a 64-byte Ed25519 secret key (seed || public key), got ${raw64.byteLength} bytes`,
    );
  }
  assertConsistentSecret(raw64);
  return SECRET_PREFIX + encodeBase64Url(raw64);
}

/**
 * Parses `k4.secret.<base64url>` into the raw 64 bytes (seed || public key), checking that the
 * public half is the one derived from the seed.
 *
 * @throws TokenError `bad_key`
 */
export function parsePaserkSecret(s: string): Buffer {
  const raw = decodePaserkBody(s, SECRET_PREFIX, 64);
  assertConsistentSecret(raw);
  return raw;
}

function paserkId(prefix: string, paserk: string): string {
  // BLAKE2b-264 (33 bytes: a whole number of base64 characters) over the id header and the key.
  const digest = blake2b(Buffer.from(prefix + paserk, 'utf8'), { dkLen: 33 });
  return prefix + encodeBase64Url(digest);
}

/**
 * Key id of a public key: `k4.pid.` + base64url(BLAKE2b-264("k4.pid." + publicPaserk)).
 * This is the `kid` in token footers.
 *
 * The PASERK is checked for form (prefix, canonical base64url, 32 bytes) but not for small
 * order: an id is only a name, and the official vectors take the id of the all-zero key.
 *
 * @throws TokenError `bad_key`
 */
export function paserkPid(publicPaserk: string): string {
  decodePaserkBody(publicPaserk, PUBLIC_PREFIX, 32);
  return paserkId(PID_PREFIX, publicPaserk);
}

/**
 * Key id of a secret key: `k4.sid.` + base64url(BLAKE2b-264("k4.sid." + secretPaserk)).
 *
 * @throws TokenError `bad_key`
 */
export function paserkSid(secretPaserk: string): string {
  parsePaserkSecret(secretPaserk);
  return paserkId(SID_PREFIX, secretPaserk);
}

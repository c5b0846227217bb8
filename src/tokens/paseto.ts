import { sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { decodeBase64Url, encodeBase64Url } from './base64url.ts';
import { TokenError, preview } from './errors.ts';

/**
 * Longest token accepted, checked before any other work so an attacker cannot make the verifier
 * split, decode or hash megabytes. A lease token is well under 1 KiB.
 */
export const MAX_TOKEN_LENGTH = 64 * 1024;

const HEADER = 'v4.public.';
const HEADER_BYTES = Buffer.from(HEADER, 'utf8');
const SIGNATURE_LENGTH = 64;
const EMPTY = new Uint8Array(0);

/**
 * Pre-Authentication Encoding (PASETO Common.md): LE64(count) then LE64(len) || bytes for each
 * piece. It makes the signed byte string unambiguous, so no piece can bleed into another.
 */
export function pae(pieces: readonly Uint8Array[]): Buffer {
  let total = 8;
  for (const piece of pieces) total += 8 + piece.byteLength;
  const out = Buffer.allocUnsafe(total);
  let offset = writeLe64(out, 0, pieces.length);
  for (const piece of pieces) {
    offset = writeLe64(out, offset, piece.byteLength);
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}

/** LE64 with the most significant bit cleared, as the spec requires for interoperability. */
function writeLe64(out: Buffer, offset: number, n: number): number {
  out.writeUInt32LE(n >>> 0, offset);
  out.writeUInt32LE(Math.floor(n / 0x1_0000_0000) & 0x7fff_ffff, offset + 4);
  return offset + 8;
}

function assertEd25519(key: KeyObject, kind: 'private' | 'public'): void {
  if (key.type !== kind || key.asymmetricKeyType !== 'ed25519') {
    throw new TokenError(
      'bad_key',
      `v4.public needs an Ed25519 ${kind} key, got a ${key.type} ${key.asymmetricKeyType ?? 'symmetric'} key`,
    );
  }
}

function signingInput(message: Uint8Array, footer: Uint8Array, implicit: Uint8Array): Buffer {
  return pae([HEADER_BYTES, message, footer, implicit]);
}

function assemble(message: Uint8Array, signature: Uint8Array, footer: Uint8Array): string {
  const body = Buffer.allocUnsafe(message.byteLength + signature.byteLength);
  body.set(message, 0);
  body.set(signature, message.byteLength);
  const token = HEADER + encodeBase64Url(body);
  // An empty footer is written as no footer at all; the verifier rejects an empty footer segment.
  return footer.byteLength === 0 ? token : `${token}.${encodeBase64Url(footer)}`;
}

/**
 * Signs `message` as a PASETO v4.public token (Ed25519 over PAE(header, m, f, i)).
 * Ed25519 is deterministic, so the same inputs always give the same token.
 *
 * @param secretKey - Ed25519 private KeyObject
 * @param footer - optional footer bytes (authenticated, not encrypted, readable by anyone)
 * @param implicit - optional implicit assertion: authenticated but not carried in the token
 * @throws TokenError `bad_key` when the key is not an Ed25519 private key
 */
export function signV4Public(
  secretKey: KeyObject,
  message: Uint8Array,
  footer: Uint8Array = EMPTY,
  implicit: Uint8Array = EMPTY,
): string {
  assertEd25519(secretKey, 'private');
  const signature = sign(null, signingInput(message, footer, implicit), secretKey);
  return assemble(message, signature, footer);
}

/**
 * As {@link signV4Public}, but the Ed25519 signature is computed on the libuv thread pool so a busy
 * server keeps its event loop free while issuing tokens.
 */
export function signV4PublicAsync(
  secretKey: KeyObject,
  message: Uint8Array,
  footer: Uint8Array = EMPTY,
  implicit: Uint8Array = EMPTY,
): Promise<string> {
  try {
    assertEd25519(secretKey, 'private');
  } catch (err) {
    return Promise.reject(err);
  }
  // Copies so a caller reusing its buffers before the promise settles cannot change what is signed.
  const m = Buffer.from(message);
  const f = Buffer.from(footer);
  const data = signingInput(m, f, implicit);
  return new Promise((resolve, reject) => {
    sign(null, data, secretKey, (err, signature) => {
      if (err) reject(err);
      else resolve(assemble(m, signature, f));
    });
  });
}

interface TokenSegments {
  bodyText: string;
  footerText: string | undefined;
}

/** Checks the size, header and segment structure of a token, without decoding anything. */
function splitToken(token: string): TokenSegments {
  if (typeof token !== 'string')
    throw new TokenError('malformed', `token must be a string, got ${typeof token}`);
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new TokenError(
      'malformed',
      `token is ${token.length} characters, over the ${MAX_TOKEN_LENGTH} limit`,
    );
  }
  if (!token.startsWith(HEADER)) {
    const m = /^(v\d+)\.([a-z]+)\./.exec(token);
    if (m) {
      const why =
        m[1] !== 'v4'
          ? `${m[1]} uses different algorithms`
          : m[2] === 'local'
            ? 'a local token is encrypted with a shared key and cannot be verified with a public key'
            : `purpose "${m[2]}" does not exist in PASETO`;
      throw new TokenError(
        'wrong_purpose',
        `token is ${m[1]}.${m[2]}; only v4.public tokens are accepted (${why})`,
      );
    }
    throw new TokenError(
      'malformed',
      `token does not start with "${HEADER}" (it starts ${preview(token, 12)})`,
    );
  }
  const dot = token.indexOf('.', HEADER.length);
  if (dot < 0) return { bodyText: token.slice(HEADER.length), footerText: undefined };
  const footerText = token.slice(dot + 1);
  if (footerText.includes('.')) {
    throw new TokenError(
      'malformed',
      'token has too many "." segments; expected v4.public.<payload> or v4.public.<payload>.<footer>',
    );
  }
  if (footerText.length === 0) {
    throw new TokenError(
      'malformed',
      'token ends with an empty footer segment (trailing "."); a token without a footer has no final "."',
    );
  }
  return { bodyText: token.slice(HEADER.length, dot), footerText };
}

function decodeFooter(footerText: string | undefined): Buffer {
  return footerText === undefined ? Buffer.alloc(0) : decodeBase64Url(footerText, 'token footer');
}

/**
 * Verifies a PASETO v4.public token and returns its message and footer.
 *
 * The footer is returned as bytes; checking what it says (e.g. the kid) is the caller's job.
 *
 * @param implicit - the implicit assertion the token was signed with (empty if none)
 * @throws TokenError `malformed` (length, segments, base64url), `wrong_purpose` (not v4.public),
 *   `bad_key` (not an Ed25519 public key), `bad_signature` (signature, footer or implicit
 *   assertion do not match)
 */
export function verifyV4Public(
  publicKey: KeyObject,
  token: string,
  implicit: Uint8Array = EMPTY,
): { message: Buffer; footer: Buffer } {
  assertEd25519(publicKey, 'public');
  const { bodyText, footerText } = splitToken(token);
  const body = decodeBase64Url(bodyText, 'token payload');
  if (body.length < SIGNATURE_LENGTH) {
    throw new TokenError(
      'malformed',
      `token payload is ${body.length} bytes, shorter than the ${SIGNATURE_LENGTH}-byte signature it must contain`,
    );
  }
  const footer = decodeFooter(footerText);
  const split = body.length - SIGNATURE_LENGTH;
  const message = body.subarray(0, split);
  const signature = body.subarray(split);
  if (!verify(null, signingInput(message, footer, implicit), publicKey, signature)) {
    throw new TokenError(
      'bad_signature',
      'token signature does not verify: the payload or footer was altered, it was signed by a different key, or the implicit assertion differs',
    );
  }
  return { message, footer };
}

/**
 * Returns the footer bytes of a v4.public token without verifying anything, so the caller can
 * read the key id and pick the key. The footer is authenticated later by {@link verifyV4Public};
 * nothing read here may be trusted before that.
 *
 * @returns the footer bytes (empty when the token has no footer)
 * @throws TokenError `malformed` / `wrong_purpose` as for verifyV4Public
 */
export function decodeFooterUnverified(token: string): Buffer {
  return decodeFooter(splitToken(token).footerText);
}

import { TokenError } from './errors.ts';

// Node's own base64url decoder is lenient (it skips '=', accepts '+' and '/', ignores stray bits),
// so every input is checked against the unpadded RFC 4648 §5 alphabet before it is decoded.
const ALPHABET = /^[A-Za-z0-9_-]*$/;

/** Encodes bytes as unpadded base64url (RFC 4648 §5), the only form PASETO and PASERK use. */
export function encodeBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Decodes unpadded base64url and accepts exactly one spelling per byte string.
 *
 * A lenient decoder lets several different token strings carry the same bytes, which breaks
 * anything that keys on the token text (revocation lists, caches, audit rows); so padding, the
 * `+`/`/` alphabet, impossible lengths and non-zero trailing bits are all rejected.
 *
 * @param text - the base64url text
 * @param what - names the field in error messages, e.g. "token payload"
 * @throws TokenError `malformed`
 */
export function decodeBase64Url(text: string, what = 'base64url value'): Buffer {
  if (!ALPHABET.test(text)) {
    const bad = /[^A-Za-z0-9_-]/.exec(text);
    const ch = bad ? bad[0] : '?';
    const hint =
      ch === '='
        ? 'padding "=" is not allowed; PASETO uses unpadded base64url'
        : ch === '+' || ch === '/'
          ? 'it uses the standard base64 alphabet; base64url uses "-" and "_" instead of "+" and "/"'
          : 'only A-Z, a-z, 0-9, "-" and "_" are allowed';
    throw new TokenError(
      'malformed',
      `${what} is not valid base64url: character ${JSON.stringify(ch)} at offset ${bad?.index ?? 0}; ${hint}`,
    );
  }
  if (text.length % 4 === 1) {
    throw new TokenError(
      'malformed',
      `${what} is not valid base64url: length ${text.length} leaves a single trailing character, which no byte string encodes to (truncated?)`,
    );
  }
  const bytes = Buffer.from(text, 'base64url');
  // Re-encoding is the simplest complete check for leftover bits in the last character.
  if (bytes.toString('base64url') !== text) {
    throw new TokenError(
      'malformed',
      `${what} is not canonical base64url: the last character carries non-zero unused bits (the value was altered or produced by a non-conforming encoder)`,
    );
  }
  return bytes;
}

import { isUtf8 } from 'node:buffer';
import { TokenError, preview } from './errors.ts';
import type { SigningKey, VerifyKey } from './keys.ts';
import {
  decodeFooterUnverified,
  signV4Public,
  signV4PublicAsync,
  verifyV4Public,
} from './paseto.ts';
import { StrictJsonError, parseStrictJson } from './strict-json.ts';

/** Options for {@link signClaims}. */
export interface SignClaimsOptions {
  /** Implicit assertion (bound into the signature, not carried in the token). */
  implicit?: string;
  /** Extra footer fields; `kid` is always the signing key's id. */
  footer?: Record<string, unknown>;
}

/** What {@link verifyClaims} returns: parsed, verified claims and footer, and the key used. */
export interface VerifiedClaims {
  claims: Record<string, unknown>;
  footer: Record<string, unknown>;
  key: VerifyKey;
}

/** Keys to verify with: a list (matched on kid) or a lookup by kid. */
export type KeySource = readonly VerifyKey[] | ((kid: string) => VerifyKey | undefined);

const EMPTY = new Uint8Array(0);

// A footer kid must name a key, never carry one (PASERK: key material in a footer is an error).
const KEY_MATERIAL_KID =
  /^k\d+\.(local|public|secret|seal|local-wrap|secret-wrap|local-pw|secret-pw)\./;

function encodeMessage(
  key: SigningKey,
  claims: Record<string, unknown>,
  opts: SignClaimsOptions,
): [Buffer, Buffer, Uint8Array] {
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new TokenError('bad_claims', 'claims must be a JSON object');
  }
  const footerFields = opts.footer ?? {};
  if (footerFields.kid !== undefined && footerFields.kid !== key.kid) {
    throw new TokenError(
      'bad_footer',
      `footer kid ${preview(String(footerFields.kid))} does not match the signing key's kid ${key.kid}`,
    );
  }
  const message = Buffer.from(JSON.stringify(claims), 'utf8');
  const footer = Buffer.from(JSON.stringify({ ...footerFields, kid: key.kid }), 'utf8');
  const implicit = opts.implicit === undefined ? EMPTY : Buffer.from(opts.implicit, 'utf8');
  return [message, footer, implicit];
}

/**
 * Signs a JSON claims object as a v4.public token with footer `{"kid": key.kid, ...opts.footer}`.
 *
 * @throws TokenError `bad_claims` (not an object), `bad_footer` (a footer kid that is not this key's)
 */
export function signClaims(
  key: SigningKey,
  claims: Record<string, unknown>,
  opts: SignClaimsOptions = {},
): string {
  const [message, footer, implicit] = encodeMessage(key, claims, opts);
  return signV4Public(key.secretKey, message, footer, implicit);
}

/** As {@link signClaims}, with the signature computed on the libuv thread pool. */
export async function signClaimsAsync(
  key: SigningKey,
  claims: Record<string, unknown>,
  opts: SignClaimsOptions = {},
): Promise<string> {
  const [message, footer, implicit] = encodeMessage(key, claims, opts);
  return signV4PublicAsync(key.secretKey, message, footer, implicit);
}

function parseJsonObject(bytes: Buffer, what: 'claims' | 'footer'): Record<string, unknown> {
  const code = what === 'claims' ? 'bad_claims' : 'bad_footer';
  // Invalid UTF-8 would otherwise be replaced by U+FFFD and two byte strings would read the same.
  if (!isUtf8(bytes)) throw new TokenError(code, `token ${what} is not valid UTF-8`);
  let value: unknown;
  try {
    value = parseStrictJson(bytes.toString('utf8'));
  } catch (err) {
    if (err instanceof StrictJsonError)
      throw new TokenError(code, `token ${what}: ${err.message}`, { cause: err });
    throw err;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TokenError(
      code,
      `token ${what} must be a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

/**
 * Reads the kid from the (not yet verified) footer, finds the key, verifies the token, and parses
 * claims and footer as strict JSON objects.
 *
 * @throws TokenError `malformed`/`wrong_purpose` (token form), `bad_footer` (no footer, not a JSON
 *   object, no string kid, kid carrying key material), `unknown_key` (no key for the kid),
 *   `bad_signature`, `bad_claims` (claims not a strict JSON object)
 */
export function verifyClaims(
  keys: KeySource,
  token: string,
  opts: { implicit?: string } = {},
): VerifiedClaims {
  const footerBytes = decodeFooterUnverified(token);
  if (footerBytes.length === 0) {
    throw new TokenError(
      'bad_footer',
      'token has no footer; expected a JSON footer {"kid":"k4.pid…"} naming the signing key',
    );
  }
  // Parsed before the signature is checked only to pick the key; it is returned only after the
  // signature (which covers these exact bytes) verifies.
  const footer = parseJsonObject(footerBytes, 'footer');
  const kid = footer.kid;
  if (typeof kid !== 'string' || kid.length === 0) {
    throw new TokenError('bad_footer', 'token footer has no "kid" string naming the signing key');
  }
  if (KEY_MATERIAL_KID.test(kid)) {
    throw new TokenError(
      'bad_footer',
      'token footer "kid" contains key material; it must be a key id such as k4.pid…',
    );
  }
  const key = typeof keys === 'function' ? keys(kid) : keys.find((k) => k.kid === kid);
  if (!key)
    throw new TokenError(
      'unknown_key',
      `no verification key with kid ${preview(kid, 60)}; the key list may be out of date`,
    );
  const implicit = opts.implicit === undefined ? EMPTY : Buffer.from(opts.implicit, 'utf8');
  const { message } = verifyV4Public(key.publicKey, token, implicit);
  return { claims: parseJsonObject(message, 'claims'), footer, key };
}

// ---------------------------------------------------------------------------------------------
// Time claims.

// RFC 3339 date-time (the PASETO registered claims' format). Lower-case t/z are allowed by the RFC.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 date-time into epoch milliseconds (fractions below 1 ms are dropped), or
 * returns undefined when the text is not one. Stricter than Date.parse, which accepts many forms
 * and rolls over impossible dates such as Feb 30.
 */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(
    Number,
  ) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
    return undefined;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return undefined;
  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // Read as digits: Number('0.57') * 1000 is 569.99…, which would floor to the wrong millisecond.
  const millis = m[7] ? Number(m[7].slice(1, 4).padEnd(3, '0')) : 0;
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // Date.UTC would map years 0–99 to 1900–1999
  utc.setUTCHours(hour, minute, second, millis);
  return utc.getTime() - offsetMinutes * 60_000;
}

/** RFC 3339 UTC with second precision (`2024-01-15T11:30:00Z`), the form our tokens carry. */
export function formatRfc3339(ms: number): string {
  if (!Number.isFinite(ms)) throw new TokenError('bad_claims', `cannot format ${ms} as a time`);
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Epoch-millisecond values of the time claims that were present. */
export interface TimeClaims {
  iat?: number;
  nbf?: number;
  exp: number;
}

function readTime(
  claims: Record<string, unknown>,
  name: 'iat' | 'nbf' | 'exp',
): number | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  const ms = typeof value === 'string' ? parseRfc3339(value) : undefined;
  if (ms === undefined) {
    throw new TokenError(
      'bad_claims',
      `claim "${name}" must be an RFC 3339 date-time string such as "2024-01-15T11:30:00Z", got ${typeof value === 'string' ? preview(value) : typeof value}`,
    );
  }
  return ms;
}

/**
 * Checks the PASETO time claims against `nowMs`: `exp` is required (a token that never expires is
 * refused), `nbf` and `iat` are optional but must be well formed when present.
 *
 * A token is expired from the instant `exp` is reached (now >= exp + leeway) and not yet valid
 * while now < nbf − leeway.
 *
 * @returns the parsed times in epoch milliseconds
 * @throws TokenError `bad_claims`, `expired`, `not_yet_valid`
 */
export function checkTimeClaims(
  claims: Record<string, unknown>,
  nowMs: number,
  opts: { leewaySeconds?: number } = {},
): TimeClaims {
  const leewayMs = (opts.leewaySeconds ?? 0) * 1000;
  if (!(leewayMs >= 0))
    throw new RangeError(`leewaySeconds must be a non-negative number, got ${opts.leewaySeconds}`);
  const iat = readTime(claims, 'iat');
  const nbf = readTime(claims, 'nbf');
  const exp = readTime(claims, 'exp');
  if (exp === undefined)
    throw new TokenError(
      'bad_claims',
      'token has no "exp" claim; tokens without an expiry are refused',
    );
  if (nowMs >= exp + leewayMs) {
    throw new TokenError(
      'expired',
      `token expired at ${formatRfc3339(exp)} (now ${formatRfc3339(nowMs)}); request a new one`,
    );
  }
  if (nbf !== undefined && nowMs < nbf - leewayMs) {
    throw new TokenError(
      'not_yet_valid',
      `token is not valid before ${formatRfc3339(nbf)} (now ${formatRfc3339(nowMs)}); check this machine's clock`,
    );
  }
  const out: TimeClaims = { exp };
  if (iat !== undefined) out.iat = iat;
  if (nbf !== undefined) out.nbf = nbf;
  return out;
}

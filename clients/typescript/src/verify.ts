import { checkTimeClaims, verifyClaims } from '../../../src/tokens/claims.ts';
import { TokenError, preview } from '../../../src/tokens/errors.ts';
import { verifyKeyFromPaserk } from '../../../src/tokens/keys.ts';
import type { VerifyKey } from '../../../src/tokens/keys.ts';
import { readLeaseClaims } from '../../../src/tokens/lease-token.ts';
import type { LeaseClaims } from '../../../src/tokens/lease-token.ts';
import { paserkPid } from '../../../src/tokens/paserk.ts';

/** One entry of `GET /v1/license/keys`. Only `public_key` is trusted; `kid` is cross-checked. */
export interface PublishedKey {
  kid?: string;
  public_key: string;
  status?: string;
}

/** The key list: either the array or the whole response body `{"keys":[…]}`. */
export type PublishedKeys = readonly PublishedKey[] | { keys: readonly PublishedKey[] };

/** Options for {@link verifyLeaseToken}. */
export interface VerifyLeaseOptions {
  /** The time to check against; defaults to the system clock. */
  now?: Date | number;
  /** When given, the token's `aud` must equal it. Applications should always pass it. */
  productId?: string;
  /** When given, the token's `tenant_id` must equal it. */
  tenantId?: string;
  /** Tolerated clock difference for `nbf`/`exp`, in seconds (default 0). */
  leewaySeconds?: number;
}

// Loading a KeyObject and hashing a kid cost far more than verifying; clients check tokens often
// against the same few keys, so both are remembered (bounded: cleared when full).
const CACHE_LIMIT = 64;
const pidCache = new Map<string, string>();
const keyCache = new Map<string, VerifyKey>();

function remember<V>(cache: Map<string, V>, key: string, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, value);
  }
  return value;
}

function listOf(keys: PublishedKeys): readonly PublishedKey[] {
  const list = Array.isArray(keys) ? keys : (keys as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) {
    throw new TokenError(
      'bad_key',
      'key list must be the body of GET /v1/license/keys ({"keys":[…]}) or its "keys" array',
    );
  }
  return list as readonly PublishedKey[];
}

/** Finds the key whose public_key hashes to `kid`, never trusting a listed kid on its own. */
function keyFor(list: readonly PublishedKey[], kid: string): VerifyKey {
  let liar: PublishedKey | undefined;
  for (const entry of list) {
    if (typeof entry?.public_key !== 'string') continue;
    let pid: string;
    try {
      pid = remember(pidCache, entry.public_key, () => paserkPid(entry.public_key));
    } catch (err) {
      if (entry.kid === kid) throw err; // the named key itself is unusable: say why
      continue;
    }
    const consistent = entry.kid === undefined || entry.kid === pid;
    if (pid === kid && consistent)
      return remember(keyCache, entry.public_key, () => verifyKeyFromPaserk(entry.public_key));
    if (!consistent && (entry.kid === kid || pid === kid)) liar = entry;
  }
  if (liar) {
    throw new TokenError(
      'unknown_key',
      `key list entry with kid ${preview(liar.kid ?? '', 60)} does not match its public_key (which hashes to ${preview(paserkPid(liar.public_key), 60)}); the list is corrupt or tampered with, so that entry is not used`,
    );
  }
  throw new TokenError(
    'unknown_key',
    `token was signed by key ${preview(kid, 60)}, which is not in the key list (${list.length} key${list.length === 1 ? '' : 's'}); fetch GET /v1/license/keys again`,
  );
}

/**
 * Verifies a lease token issued by the license server and returns its claims.
 *
 * Checks, in order: token form and footer kid, that a listed public key hashes to that kid, the
 * Ed25519 signature, `typ` = bp.lease/1 and the claim shapes, `aud` (when productId is given),
 * `tenant_id` (when tenantId is given), then `nbf`/`exp` against `now`.
 *
 * @param keys - the body of `GET /v1/license/keys` or its `keys` array
 * @throws TokenError — `malformed`, `wrong_purpose`, `bad_footer`, `unknown_key`, `bad_key`,
 *   `bad_signature`, `wrong_type`, `bad_claims`, `wrong_audience`, `not_yet_valid`, `expired`
 */
export function verifyLeaseToken(
  token: string,
  keys: PublishedKeys,
  opts: VerifyLeaseOptions = {},
): LeaseClaims {
  const list = listOf(keys);
  const { claims } = verifyClaims((kid) => keyFor(list, kid), token);
  const lease = readLeaseClaims(claims);
  if (opts.productId !== undefined && lease.aud !== opts.productId) {
    throw new TokenError(
      'wrong_audience',
      `lease token is for product ${preview(lease.aud)}, not ${preview(opts.productId)}`,
    );
  }
  if (opts.tenantId !== undefined && lease.tenantId !== opts.tenantId) {
    throw new TokenError(
      'wrong_audience',
      `lease token is for tenant ${preview(lease.tenantId)}, not ${preview(opts.tenantId)}`,
    );
  }
  const now =
    opts.now === undefined
      ? Date.now()
      : typeof opts.now === 'number'
        ? opts.now
        : opts.now.getTime();
  if (!Number.isFinite(now)) throw new RangeError('verifyLeaseToken: opts.now is not a valid time');
  checkTimeClaims(claims, now, { leewaySeconds: opts.leewaySeconds });
  return lease;
}

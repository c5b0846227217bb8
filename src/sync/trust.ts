/**
 * The vendor keys this server trusts for import bundles. Pinned by `init --vendor-key`; changed
 * afterwards only by a signed bundle (setting `vendor_keys`).
 */
import { AppError } from '../errors.ts';
import type { AnyStore as Store } from '../storage/store.ts';
import { TokenError } from '../tokens/errors.ts';
import { verifyKeyFromPaserk, type VerifyKey } from '../tokens/keys.ts';

const VENDOR_KEYS = 'vendor_keys';

/**
 * Parses k4.public keys, refusing malformed and small-order ones and repeats.
 *
 * @param fail - builds the error for a bad key (invalid_request at init, bundle_rejected in a bundle)
 */
export function parseVendorKeys(
  keys: readonly string[],
  fail: (message: string) => AppError,
): VerifyKey[] {
  const out: VerifyKey[] = [];
  for (const [i, k] of keys.entries()) {
    if (typeof k !== 'string' || !k.startsWith('k4.public.'))
      throw fail(`vendor key ${i + 1} is not a k4.public PASERK (k4.public.…)`);
    let key: VerifyKey;
    try {
      key = verifyKeyFromPaserk(k);
    } catch (err) {
      if (err instanceof TokenError) throw fail(`vendor key ${i + 1} is refused: ${err.message}`);
      throw err;
    }
    if (out.some((o) => o.kid === key.kid)) throw fail(`vendor key ${i + 1} is listed twice`);
    out.push(key);
  }
  return out;
}

/** The pinned vendor keys (none on a server initialised without --vendor-key). */
export function pinnedVendorKeys(store: Store): VerifyKey[] {
  const raw = store.state.get(VENDOR_KEYS);
  if (raw === undefined) return [];
  const list = JSON.parse(raw) as string[];
  return list.map((k) => verifyKeyFromPaserk(k));
}

/** Replaces the pinned set; call inside the transaction that audits it. */
export function setVendorKeys(store: Store, keys: readonly VerifyKey[]): void {
  store.state.set(VENDOR_KEYS, JSON.stringify(keys.map((k) => k.publicPaserk)));
}

/**
 * `init --vendor-key`: pins keys on a server that has none. Giving the same set again is a no-op;
 * another set is refused, because after the first pinning only a signed bundle may change it.
 * Runs inside the caller's transaction and audits the pinning.
 */
export function pinAtInit(
  store: Store,
  keys: readonly VerifyKey[],
  actor: string,
  now: number,
): 'pinned' | 'unchanged' {
  const current = pinnedVendorKeys(store);
  const same =
    current.length === keys.length && keys.every((k) => current.some((c) => c.kid === k.kid));
  if (same) return 'unchanged';
  if (current.length > 0) {
    throw new AppError(
      'conflict',
      `vendor keys are pinned already (${current.map((k) => k.kid).join(', ')}); they change only through a signed bundle`,
      { pinned: current.map((k) => k.kid) },
      'ask the vendor for a bundle with the setting vendor_keys',
    );
  }
  setVendorKeys(store, keys);
  store.audit.append({
    at: now,
    actor,
    action: 'sync.vendor_keys_pinned',
    targetType: 'server',
    targetId: null,
    details: { kids: keys.map((k) => k.kid), public_keys: keys.map((k) => k.publicPaserk) },
  });
  return 'pinned';
}

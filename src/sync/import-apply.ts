/**
 * The writes of an import, under the write lock (sync-bundles/README.md section 4, after the
 * checks): claim checks the order again and that the plan is still current, then records the seq
 * (the ledger row); applyWrite writes one planned change; finish writes the `sync.import` audit row
 * and lets the vendor's signed `iat` vouch for our clock. Used by the one-transaction apply
 * (import.ts) and by the stepwise one (import-steps.ts) alike.
 */
import { graceDays } from '../domain/types.ts';
import { orderOf, type Verified } from './import-checks.ts';
import {
  entitlementOf,
  W_INSERT,
  W_REVOKE,
  W_SETTING,
  W_UPDATE,
  type Plan,
  type Write,
} from './import-plan.ts';
import { setVendorKeys } from './trust.ts';
import type { ImportOptions } from './import.ts';
import type { SyncDeps } from './service.ts';

/** Id lists in the `sync.import` audit row stop at this many (the counts are exact). */
const AUDIT_LIST_LIMIT = 100;
/** The server_state key of the import being applied in steps (ApplyingMarker, import-steps.ts). */
export const APPLYING_KEY = 'sync_import_applying';

/** Thrown inside the apply when the plan no longer matches the database: prepare again. */
export class StalePlan extends Error {}

/**
 * Under the lock: the order again (another process may have imported meanwhile), the plan still
 * current, no stepwise apply running; then the seq is recorded. False when this very bundle was
 * imported meanwhile (nothing to do).
 */
export function claim(
  deps: SyncDeps,
  plan: Plan,
  v: Verified,
  now: number,
  opts: ImportOptions,
): boolean {
  const { store } = deps;
  const repo = store.sync;
  const m = v.manifest;
  if (orderOf(deps, v) === 'same') return false;
  if (
    store.entitlements.epoch() !== plan.epoch ||
    (repo.lastImport()?.manifest_sha256 ?? null) !== plan.lastImport
  )
    throw new StalePlan('stale');
  if (store.state.get(APPLYING_KEY) !== undefined)
    throw new StalePlan('another bundle is being applied');
  repo.recordImport({
    seq: m.seq,
    manifest_sha256: v.hash,
    iss: m.iss,
    kid: v.kid,
    iat: m.iat,
    exp: m.exp,
    ack: m.ack,
    records: m.payload.records,
    imported_at: now,
    actor: opts.actor,
  });
  return true;
}

/** Applies one planned write, under the lock. An insert skips an id present already (a step done twice by two finishers). */
export function applyWrite(deps: SyncDeps, w: Write, seq: number, now: number): void {
  const { store } = deps;
  const repo = store.sync;
  switch (w.k) {
    case W_INSERT: {
      const e = entitlementOf(w.rec, undefined, now);
      store.entitlements.insertNew(e, graceDays(e.policy));
      return;
    }
    case W_UPDATE: {
      const e = entitlementOf(w.rec, store.entitlements.get(w.rec.entitlement_id), now);
      store.entitlements.update(e, graceDays(e.policy));
      return;
    }
    case W_REVOKE: {
      repo.revoke(w.id, seq, now);
      // Read here, under the lock: an entitlement this bundle added a moment ago is revoked too.
      const existing = store.entitlements.get(w.id);
      if (existing && existing.status !== 'revoked')
        store.entitlements.update(
          { ...existing, status: 'revoked', updatedAt: now },
          graceDays(existing.policy),
        );
      return;
    }
    case W_SETTING:
      if (w.op.k === 'vendor_keys') setVendorKeys(store, w.op.keys);
      else store.state.set(w.op.key, w.op.value);
      return;
  }
}

/** The audit row (and the time vouch) that ends an import, in its last transaction. */
export function finish(
  deps: SyncDeps,
  v: Verified,
  now: number,
  opts: { actor: string; name?: string | undefined },
  plan: Plan,
  resumed: boolean,
): void {
  const m = v.manifest;
  const { diff, counts, seatsCut } = plan;
  const cap = <T>(list: T[]) => list.slice(0, AUDIT_LIST_LIMIT);
  deps.store.audit.append({
    at: now,
    actor: opts.actor,
    action: 'sync.import',
    targetType: 'sync_bundle',
    targetId: String(m.seq),
    details: {
      seq: m.seq,
      manifest_sha256: v.hash,
      kid: v.kid,
      iss: m.iss,
      ...(opts.name !== undefined ? { file: opts.name } : {}),
      ...counts,
      settings: diff.settings,
      seats_cut: cap(seatsCut),
      ids: {
        added: cap(diff.added),
        changed: cap(diff.changed.map((c) => c.entitlement_id)),
        revoked: cap(diff.revoked),
        suspended: cap(diff.suspended),
        ignored: cap(diff.ignored),
      },
      // Finished after an interruption: the counts are what the finishing pass still wrote.
      ...(resumed ? { resumed: true } : {}),
    },
  });
  // The vendor's signed time vouches for our clock (the time guard's high-water mark).
  deps.timeGuard?.vouch?.(m.iat, now);
}

/** A big vendor snapshot for the end-to-end tests that import one (sync-big, busy). */
import { loadVendorKey, writeImportBundle } from '../src/sync/vendor.ts';

/**
 * Writes a signed BPSYNC/1 import bundle of `count` entitlements (seq 1) for `serverId` to `out`:
 * ids `ent_big` + the index padded to `digits`, 500 tenants, two products, a third per_user with
 * 10 seats and the rest concurrent with 25. Returns the file.
 */
export function writeBigSnapshot(
  vendorSecretKeyFile: string,
  serverId: string,
  count: number,
  out: string,
  digits = 7,
): string {
  const key = loadVendorKey(vendorSecretKeyFile);
  const now = Date.now();
  function* records() {
    for (let i = 0; i < count; i++) {
      yield {
        op: 'entitlement',
        entitlement_id: `ent_big${String(i).padStart(digits, '0')}`,
        tenant_id: `tenant-${i % 500}`,
        product_id: i % 2 ? 'cad' : 'cam',
        policy_json:
          i % 3
            ? { type: 'concurrent', max_seats: 25, features: ['draw', 'export', 'render'] }
            : { type: 'per_user', max_seats: 10, seat_assignment: 'auto' },
        starts_at: '2024-01-01T00:00:00Z',
        ends_at: '2099-01-01T00:00:00Z',
        rev: 1,
      };
    }
  }
  return writeImportBundle(
    key,
    { serverId, seq: 1, prev: null, iatMs: now - 60_000, expMs: now + 30 * 86_400_000, ack: null },
    records(),
    out,
  ).file;
}

// The entitlements and requests the bench uses, shared by the HTTP runs (bench/run.mjs) and the
// in-process ceiling (bench/inproc.mjs), so both measure the same work.

export const PRODUCT = 'bench-app';
/** `grant` and `renew`: this many entitlements, one tenant each, each with room to spare. */
export const GRANT_TENANTS = 100;
export const GRANT_SEATS = 100_000;
export const HOT_TENANT = 'hot-tenant';
export const HOT_SEATS = 1_000_000;
export const HOT_PREFILL = 100_000;
export const BULK_IMPORT_COUNT = 100_000;

const TERM = { starts_at: '2020-01-01T00:00:00Z', ends_at: '2099-12-31T23:59:59Z' };

export const grantTenant = (i) => `grant-t${String(i % GRANT_TENANTS).padStart(3, '0')}`;

/** The import items for the `grant`/`renew` entitlements and the hot one (the hot one last). */
export function provisionItems() {
  const items = [];
  for (let i = 0; i < GRANT_TENANTS; i++) {
    items.push({
      tenant_id: grantTenant(i),
      product_id: PRODUCT,
      external_id: `bench-grant-${i}`,
      policy_json: { type: 'concurrent', max_seats: GRANT_SEATS },
      ...TERM,
    });
  }
  items.push({
    tenant_id: HOT_TENANT,
    product_id: PRODUCT,
    external_id: 'bench-hot',
    policy_json: { type: 'concurrent', max_seats: HOT_SEATS },
    ...TERM,
  });
  return items;
}

/** A lease request body for a distinct subject: request n goes to tenant n % 100 (or the hot tenant). */
export function grantRequest(n, tag, hot = false) {
  return {
    product_id: PRODUCT,
    tenant_id: hot ? HOT_TENANT : grantTenant(n),
    subject_type: 'user',
    subject_id: `${tag}-${n}`,
  };
}

const POLICY_TYPES = ['per_user', 'concurrent', 'per_machine', 'feature_based'];

/**
 * The policy of the i-th entitlement of a big import (the bulk import and the bundle): the four
 * types in turn, 1 to 50 seats.
 */
export function mixedPolicy(i) {
  const type = POLICY_TYPES[i % 4];
  return type === 'feature_based'
    ? { type, features: ['core', 'export'] }
    : { type, max_seats: 1 + (i % 50), features: ['core'] };
}

/** 100,000 entitlements for the bulk import figure: distinct tenants, a mix of policy types. */
export function bulkImportItems(count = BULK_IMPORT_COUNT, tag = 'bulk') {
  const items = new Array(count);
  for (let i = 0; i < count; i++) {
    items[i] = {
      tenant_id: `${tag}-tenant-${Math.floor(i / 10)}`,
      product_id: `${tag}-product-${i % 7}`,
      external_id: `${tag}-${i}`,
      policy_json: mixedPolicy(i),
      ...TERM,
    };
  }
  return items;
}

import type { Db } from './db.ts';
import type {
  Entitlement,
  Policy,
  PolicyType,
  Source,
  StatusBounds,
  StoredStatus,
} from '../domain/types.ts';
import { DAY_MS } from '../domain/types.ts';
import type { EntitlementFilter, StoredEntitlement } from '../domain/store.ts';

interface Row {
  seq: number;
  id: string;
  tenant_id: string;
  product_id: string;
  policy_json: string;
  policy_type: PolicyType;
  max_seats: number | null;
  grace_days: number;
  starts_at: number;
  ends_at: number;
  status: StoredStatus;
  source: Source;
  external_id: string | null;
  rev: number | null;
  created_at: number;
  updated_at: number;
}

function fromRow(r: Row): StoredEntitlement {
  return {
    seq: r.seq,
    id: r.id,
    tenantId: r.tenant_id,
    productId: r.product_id,
    policy: JSON.parse(r.policy_json) as Policy,
    startsAt: r.starts_at,
    endsAt: r.ends_at,
    status: r.status,
    source: r.source,
    externalId: r.external_id,
    rev: r.rev,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toParams(e: Entitlement, graceDays: number) {
  return {
    id: e.id,
    tenant_id: e.tenantId,
    product_id: e.productId,
    policy_json: JSON.stringify(e.policy),
    policy_type: e.policy.type,
    max_seats: e.policy.max_seats ?? null,
    grace_days: graceDays,
    starts_at: e.startsAt,
    ends_at: e.endsAt,
    status: e.status,
    source: e.source,
    external_id: e.externalId,
    rev: e.rev,
    created_at: e.createdAt,
    updated_at: e.updatedAt,
  };
}

// The stored expressions a derived status is bounded on (StatusBounds in the domain).
const BOUNDED = {
  startsAt: 'starts_at',
  endsAt: 'ends_at',
  graceEnd: `ends_at + grace_days * ${DAY_MS}`,
} as const;
const OPS = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** SQL conditions (and their parameters) for bounds the domain made from a derived status. */
function statusWhere(b: StatusBounds, where: string[], params: Record<string, unknown>): void {
  where.push('status = @stored');
  params.stored = b.stored;
  for (const field of Object.keys(BOUNDED) as Array<keyof typeof BOUNDED>) {
    const bound = b[field];
    if (bound === undefined) continue;
    for (const op of Object.keys(OPS) as Array<keyof typeof OPS>) {
      const v = bound[op];
      if (v === undefined) continue;
      where.push(`${BOUNDED[field]} ${OPS[op]} @${field}_${op}`);
      params[`${field}_${op}`] = v;
    }
  }
}

/**
 * All SQL about entitlements: the domain's EntitlementRepo, plus what sync and /metrics read
 * (insertNew, count, totals).
 */
export function createEntitlementRepo(db: Db) {
  const insert = db.prepare(`INSERT INTO entitlements
    (id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, external_id, rev, created_at, updated_at)
    VALUES (@id, @tenant_id, @product_id, @policy_json, @policy_type, @max_seats, @grace_days, @starts_at, @ends_at, @status, @source, @external_id, @rev, @created_at, @updated_at)`);
  const update = db.prepare(`UPDATE entitlements SET
    tenant_id = @tenant_id, product_id = @product_id, policy_json = @policy_json, policy_type = @policy_type,
    max_seats = @max_seats, grace_days = @grace_days, starts_at = @starts_at, ends_at = @ends_at, status = @status,
    source = @source, external_id = @external_id, rev = @rev, updated_at = @updated_at
    WHERE id = @id`);
  // The same row, unless the id exists already (then nothing, and no epoch change): a bundle step
  // that another finisher may have written first.
  const insertNew = db.prepare(`INSERT INTO entitlements
    (id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, external_id, rev, created_at, updated_at)
    VALUES (@id, @tenant_id, @product_id, @policy_json, @policy_type, @max_seats, @grace_days, @starts_at, @ends_at, @status, @source, @external_id, @rev, @created_at, @updated_at)
    ON CONFLICT (id) DO NOTHING`);
  const byId = db.prepare<[string], Row>('SELECT * FROM entitlements WHERE id = ?');
  const byExternalId = db.prepare<[string], Row>(
    'SELECT * FROM entitlements WHERE external_id = ?',
  );
  const candidatesForProduct = db.prepare<[string], Row>(
    "SELECT * FROM entitlements WHERE product_id = ? AND status <> 'revoked' ORDER BY ends_at, seq LIMIT 100",
  );
  const count = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM entitlements');
  const totals = db.prepare<
    [],
    { entitlements: number; leases: number | null; seats: number | null }
  >(
    `SELECT (SELECT count(*) FROM entitlements) AS entitlements, sum(active_leases) AS leases, sum(seats_assigned) AS seats FROM entitlement_counters`,
  );
  // Lease candidates: the rule orders by the end of term first (use what runs out first), then age.
  const candidates = db.prepare<[string, string], Row>(
    "SELECT * FROM entitlements WHERE tenant_id = ? AND product_id = ? AND status <> 'revoked' ORDER BY ends_at, seq LIMIT 100",
  );
  const epoch = db.prepare<[], bigint | number>('SELECT value FROM entitlement_epoch').pluck();
  // The grant path asks for the same tenant and product again and again: keep the answer until any
  // connection changes any entitlement's terms (the epoch, see migration 0005).
  const cache = new Map<string, ReadonlyArray<Readonly<StoredEntitlement>>>();
  let cacheEpoch: bigint | number | undefined;
  const CACHE_MAX = 10_000;

  return {
    insert(e: Entitlement, graceDays: number): void {
      insert.run(toParams(e, graceDays));
    },
    /** insert(), but an id present already is left as it is; false then. */
    insertNew(e: Entitlement, graceDays: number): boolean {
      return insertNew.run(toParams(e, graceDays)).changes === 1;
    },
    update(e: Entitlement, graceDays: number): void {
      update.run(toParams(e, graceDays));
    },
    get(id: string): StoredEntitlement | undefined {
      const r = byId.get(id);
      return r && fromRow(r);
    },
    getByExternalId(externalId: string): StoredEntitlement | undefined {
      const r = byExternalId.get(externalId);
      return r && fromRow(r);
    },
    /** The tenant's entitlements for a product in grant-rule order; shared objects: do not mutate. */
    candidates(tenantId: string, productId: string): ReadonlyArray<Readonly<StoredEntitlement>> {
      const now = epoch.get();
      if (now !== cacheEpoch) {
        cache.clear();
        cacheEpoch = now;
      }
      const key = `${tenantId}\u0000${productId}`;
      let rows = cache.get(key);
      if (rows === undefined) {
        rows = Object.freeze(
          candidates.all(tenantId, productId).map((r) => Object.freeze(fromRow(r))),
        );
        if (cache.size >= CACHE_MAX) cache.clear();
        cache.set(key, rows);
      }
      return rows;
    },
    candidatesForProduct(productId: string): Array<StoredEntitlement> {
      return candidatesForProduct.all(productId).map(fromRow);
    },
    count(): number {
      return count.get()!.n;
    },
    /**
     * The entitlement epoch: changes with every change to any entitlement's terms, from any
     * connection. Work prepared outside the write lock checks it did not move before applying.
     */
    epoch(): bigint | number {
      return epoch.get()!;
    },
    /** Totals for /metrics: entitlements, active lease rows (until swept), named seats. */
    totals(): { entitlements: number; leases: number; seats: number } {
      const t = totals.get()!;
      return { entitlements: t.entitlements, leases: t.leases ?? 0, seats: t.seats ?? 0 };
    },
    list(f: EntitlementFilter): Array<StoredEntitlement> {
      const where = ['seq > @after'];
      const params: Record<string, unknown> = { after: f.afterSeq ?? 0, limit: f.limit };
      // substr, not LIKE: LIKE folds ASCII case and treats _ as a wildcard, and ids hold both.
      if (f.idPrefix !== undefined) {
        where.push('substr(id, 1, length(@prefix)) = @prefix');
        params.prefix = f.idPrefix;
      }
      if (f.tenantId !== undefined) {
        where.push('tenant_id = @tenant');
        params.tenant = f.tenantId;
      }
      if (f.productId !== undefined) {
        where.push('product_id = @product');
        params.product = f.productId;
      }
      if (f.status !== undefined) statusWhere(f.status, where, params);
      const sql = `SELECT * FROM entitlements WHERE ${where.join(' AND ')} ORDER BY seq LIMIT @limit`;
      return (db.prepare(sql).all(params) as Row[]).map(fromRow);
    },
  };
}

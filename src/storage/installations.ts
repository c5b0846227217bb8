import type { Db } from './db.ts';
import type { Installation, StoredInstallation } from '../domain/types.ts';
import type { InstallationFilter, InstallationRepo, QuotaDay } from '../domain/store.ts';
import { DAY_MS } from '../domain/types.ts';

interface InstallationRow {
  seq: number;
  id: string;
  entitlement_id: string;
  quota: string;
  name: string;
  metadata: string;
  version: string | null;
  principal_id: string | null;
  idempotency_key: string | null;
  created_at: number;
  updated_at: number;
}

const fromRow = (r: InstallationRow): StoredInstallation => ({
  seq: r.seq,
  id: r.id,
  entitlementId: r.entitlement_id,
  quota: r.quota,
  name: r.name,
  metadata: JSON.parse(r.metadata) as Record<string, unknown>,
  version: r.version,
  principalId: r.principal_id,
  idempotencyKey: r.idempotency_key,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** All SQL about installations (the units of quotas); `metadata` is stored as JSON text. */
export function createInstallationRepo(db: Db) {
  const insert = db.prepare(
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, version, principal_id, idempotency_key, created_at, updated_at)
     VALUES (@id, @entitlement_id, @quota, @name, @metadata, @version, @principal_id, @idempotency_key, @created_at, @updated_at)`,
  );
  const byId = db.prepare<[string], InstallationRow>('SELECT * FROM installations WHERE id = ?');
  const byKey = db.prepare<[string, string], InstallationRow>(
    'SELECT * FROM installations WHERE entitlement_id = ? AND idempotency_key = ?',
  );
  const count = db
    .prepare<[string, string], number>(
      'SELECT count(*) FROM installations WHERE entitlement_id = ? AND quota = ?',
    )
    .pluck();
  const counts = db.prepare<[string], { quota: string; n: number }>(
    'SELECT quota, count(*) AS n FROM installations WHERE entitlement_id = ? GROUP BY quota',
  );
  const allCounts = db.prepare<[], { entitlement_id: string; quota: string; n: number }>(
    'SELECT entitlement_id, quota, count(*) AS n FROM installations GROUP BY entitlement_id, quota ORDER BY entitlement_id, quota',
  );
  const remove = db.prepare<[string]>('DELETE FROM installations WHERE id = ?');
  const setVersion = db.prepare<[string, number, string]>(
    'UPDATE installations SET version = ?, updated_at = ? WHERE id = ?',
  );
  const event = db.prepare<[number, string, string, number]>(
    'INSERT INTO installation_events (at, entitlement_id, quota, delta) VALUES (?, ?, ?, ?)',
  );
  const daily = db.prepare<[number, number, string, number, number], QuotaDay>(
    `SELECT (at / ?) * ? AS day, quota, count(*) FILTER (WHERE delta = 1) AS added, count(*) FILTER (WHERE delta = -1) AS removed
     FROM installation_events WHERE entitlement_id = ? AND at >= ? AND at < ?
     GROUP BY day, quota ORDER BY day, quota`,
  );

  return {
    event(at: number, entitlementId: string, quota: string, delta: 1 | -1): void {
      event.run(at, entitlementId, quota, delta);
    },
    daily(entitlementId: string, from: number, to: number): QuotaDay[] {
      return daily.all(DAY_MS, DAY_MS, entitlementId, from, to);
    },
    insert(i: Installation): void {
      insert.run({
        id: i.id,
        entitlement_id: i.entitlementId,
        quota: i.quota,
        name: i.name,
        metadata: JSON.stringify(i.metadata),
        version: i.version,
        principal_id: i.principalId,
        idempotency_key: i.idempotencyKey,
        created_at: i.createdAt,
        updated_at: i.updatedAt,
      });
    },
    get(id: string): StoredInstallation | undefined {
      const r = byId.get(id);
      return r && fromRow(r);
    },
    byKey(entitlementId: string, idempotencyKey: string): StoredInstallation | undefined {
      const r = byKey.get(entitlementId, idempotencyKey);
      return r && fromRow(r);
    },
    count(entitlementId: string, quota: string): number {
      return count.get(entitlementId, quota) ?? 0;
    },
    counts(entitlementId: string): Record<string, number> {
      // fromEntries defines own properties: a quota named __proto__ stays a count.
      return Object.fromEntries(counts.all(entitlementId).map((r) => [r.quota, r.n]));
    },
    allCounts(): Map<string, Record<string, number>> {
      const out = new Map<string, Array<[string, number]>>();
      for (const r of allCounts.all()) {
        const m = out.get(r.entitlement_id);
        if (m) m.push([r.quota, r.n]);
        else out.set(r.entitlement_id, [[r.quota, r.n]]);
      }
      return new Map([...out].map(([id, pairs]) => [id, Object.fromEntries(pairs)]));
    },
    remove(id: string): void {
      remove.run(id);
    },
    setVersion(id: string, version: string, at: number): void {
      setVersion.run(version, at, id);
    },
    list(f: InstallationFilter): StoredInstallation[] {
      // Only the filters given: one plan per combination (both stores cache the statement text).
      const where = ['i.seq > @after'];
      const params: Record<string, unknown> = { after: f.afterSeq, limit: f.limit };
      const add = (cond: string, name: string, value: unknown) => {
        where.push(cond);
        params[name] = value;
      };
      if (f.entitlementId !== undefined) add('i.entitlement_id = @eid', 'eid', f.entitlementId);
      if (f.tenantId !== undefined) add('e.tenant_id = @tenant', 'tenant', f.tenantId);
      if (f.quota !== undefined) add('i.quota = @quota', 'quota', f.quota);
      if (f.productIds !== undefined) {
        // No product at all matches nothing (IN () is not SQL).
        if (f.productIds.length === 0) return [];
        where.push(`e.product_id IN (${f.productIds.map((_, k) => `@p${k}`).join(', ')})`);
        f.productIds.forEach((id, k) => (params[`p${k}`] = id));
      }
      const sql = `SELECT i.* FROM installations i JOIN entitlements e ON e.id = i.entitlement_id
        WHERE ${where.join(' AND ')} ORDER BY i.seq LIMIT @limit`;
      return (db.prepare(sql).all(params) as InstallationRow[]).map(fromRow);
    },
  } satisfies InstallationRepo & Record<string, unknown>;
}

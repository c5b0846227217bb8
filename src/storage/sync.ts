import { dirname, join } from 'node:path';
import { SERVER_BUSY_TIMEOUT_MS, type Db } from './db.ts';
import type {
  SyncExportRecord,
  SyncImportRecord,
  SyncManualEntitlement,
  SyncSeat,
  SyncStore,
  SyncUsage,
} from '../domain/sync-store.ts';

/**
 * All SQL about BPSYNC/1: the import and export ledgers, permanent revocations, the snapshot
 * bookkeeping of an import, and the reads an export makes: the SyncStore of the domain, for
 * SQLite. Writes run inside the caller's IMMEDIATE transaction.
 */
/**
 * `host` overrides what another store answers differently: the folder for an import's work files
 * (beside the database file by default) and whether a write waits only briefly for the lock.
 */
export function createSyncRepo(
  db: Db,
  host: { workDir?: string; waitsBriefly?: () => boolean } = {},
): SyncStore {
  const lastImport = db.prepare<[], SyncImportRecord>(
    'SELECT * FROM sync_imports ORDER BY seq DESC LIMIT 1',
  );
  const insertImport =
    db.prepare(`INSERT INTO sync_imports (seq, manifest_sha256, iss, kid, iat, exp, ack, records, imported_at, actor)
    VALUES (@seq, @manifest_sha256, @iss, @kid, @iat, @exp, @ack, @records, @imported_at, @actor)`);
  const lastExport = db.prepare<[], SyncExportRecord>(
    'SELECT * FROM sync_exports ORDER BY seq DESC LIMIT 1',
  );
  const insertExport =
    db.prepare(`INSERT INTO sync_exports (seq, manifest_sha256, created_at, period_start, audit_seq, audit_hash, event_seq, clock_seq, records, file)
    VALUES (@seq, @manifest_sha256, @created_at, @period_start, @audit_seq, @audit_hash, @event_seq, @clock_seq, @records, @file)`);
  const isRevoked = db.prepare<[string], { one: number }>(
    'SELECT 1 AS one FROM sync_revocations WHERE entitlement_id = ?',
  );
  const revoke = db.prepare<[string, number, number]>(
    'INSERT INTO sync_revocations (entitlement_id, seq, revoked_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
  );
  const revocationCount = db.prepare<[], { n: number }>(
    'SELECT count(*) AS n FROM sync_revocations',
  );
  const bundleCounts = db.prepare<[], { status: string; n: number }>(
    "SELECT status, count(*) AS n FROM entitlements WHERE source = 'bundle' GROUP BY status",
  );
  const eventHead = db.prepare<[], { seq: number | null }>(
    'SELECT max(seq) AS seq FROM lease_events',
  );
  const usage = db.prepare<{ from: number; to: number }, SyncUsage>(`
    WITH agg AS (
      SELECT entitlement_id,
             max(active_after) AS peak,
             count(*) FILTER (WHERE kind = 'grant') AS grants,
             count(*) FILTER (WHERE kind = 'deny') AS denials,
             count(DISTINCT CASE WHEN kind IN ('grant', 'renew') THEN subject_type || ':' || subject_id END) AS subjects,
             count(*) FILTER (WHERE kind = 'grant' AND flags & 1 <> 0) AS overdraft_grants,
             count(*) FILTER (WHERE flags & 2 <> 0) AS borrows
      FROM lease_events
      WHERE seq > @from AND seq <= @to AND entitlement_id IS NOT NULL
      GROUP BY entitlement_id)
    SELECT e.id AS entitlement_id,
           coalesce(agg.peak, 0) AS peak_in,
           CASE WHEN @from = 0 THEN 0 ELSE coalesce((
             SELECT le.active_after FROM lease_events le
             WHERE le.entitlement_id = e.id AND le.seq <= @from AND le.active_after IS NOT NULL
             ORDER BY le.at DESC, le.seq DESC LIMIT 1), 0) END AS carried,
           coalesce(agg.grants, 0) AS grants,
           coalesce(agg.denials, 0) AS denials,
           coalesce(agg.subjects, 0) AS unique_subjects,
           coalesce(agg.overdraft_grants, 0) AS overdraft_grants,
           coalesce(agg.borrows, 0) AS borrows
    FROM entitlements e LEFT JOIN agg ON agg.entitlement_id = e.id
    ORDER BY e.seq`);
  const seats = db.prepare<[], SyncSeat>(
    'SELECT id, entitlement_id, subject_type, subject_id, assigned_at, assigned_by FROM seats ORDER BY entitlement_id, subject_type, subject_id',
  );
  const manual = db.prepare<[], SyncManualEntitlement>(
    "SELECT id, tenant_id, product_id, policy_json, starts_at, ends_at, status, external_id, created_at, updated_at FROM entitlements WHERE source = 'manual' ORDER BY seq",
  );

  // The ids an import has seen, in a TEMP table so a million-record snapshot costs disk pages, not
  // heap. TEMP tables belong to the connection, not the schema. Created here, outside any
  // transaction, and again (IF NOT EXISTS) by each import: a CREATE inside a transaction that
  // rolls back is undone with it.
  const createSeen =
    'CREATE TEMP TABLE IF NOT EXISTS sync_seen (id TEXT PRIMARY KEY) WITHOUT ROWID';
  if (!db.readonly) db.exec(createSeen);
  let seen:
    | {
        clear: () => void;
        mark: (id: string) => boolean;
        suspendUnseen: (now: number) => string[];
        suspendSome: (now: number, limit: number) => number;
        unseen: () => IterableIterator<string>;
      }
    | undefined;
  function seenTable() {
    db.exec(createSeen);
    if (seen) return seen;
    const clear = db.prepare('DELETE FROM temp.sync_seen');
    const mark = db.prepare<[string]>(
      'INSERT INTO temp.sync_seen (id) VALUES (?) ON CONFLICT DO NOTHING',
    );
    const suspend = db.prepare<[number], { id: string }>(
      `UPDATE entitlements SET status = 'suspended', updated_at = ?
       WHERE source = 'bundle' AND status = 'active' AND id NOT IN (SELECT id FROM temp.sync_seen)
       RETURNING id`,
    );
    const unseen = db
      .prepare<[], string>(
        "SELECT id FROM entitlements WHERE source = 'bundle' AND status = 'active' AND id NOT IN (SELECT id FROM temp.sync_seen) ORDER BY seq",
      )
      .pluck();
    const suspendSome = db.prepare<[number, number]>(
      `UPDATE entitlements SET status = 'suspended', updated_at = ?
       WHERE id IN (SELECT id FROM entitlements WHERE source = 'bundle' AND status = 'active' AND id NOT IN (SELECT id FROM temp.sync_seen) LIMIT ?)`,
    );
    seen = {
      unseen: () => unseen.iterate(),
      suspendSome: (now, limit) => suspendSome.run(now, limit).changes,
      clear: () => void clear.run(),
      mark: (id) => mark.run(id).changes === 1,
      suspendUnseen: (now) => suspend.all(now).map((r) => r.id),
    };
    return seen;
  }

  const begin = db.prepare('BEGIN DEFERRED');
  const commit = db.prepare('COMMIT');

  return {
    lastImport: () => lastImport.get(),
    recordImport: (row) => void insertImport.run(row),
    lastExport: () => lastExport.get(),
    recordExport: (row) => void insertExport.run(row),
    isRevoked: (entitlementId) => isRevoked.get(entitlementId) !== undefined,
    revoke: (entitlementId, seq, at) => revoke.run(entitlementId, seq, at).changes === 1,
    revocationCount: () => revocationCount.get()!.n,
    bundleCounts() {
      const out = { active: 0, suspended: 0, revoked: 0 };
      for (const r of bundleCounts.all()) out[r.status as keyof typeof out] = r.n;
      return out;
    },
    // The seen-set lives in the connection's TEMP database, so it is written without the main
    // database's write lock.
    beginSnapshot: () => seenTable().clear(),
    unseen: () => seen!.unseen(),
    markSeen: (entitlementId) => seen!.mark(entitlementId),
    suspendUnseenSome: (now, limit) => seen!.suspendSome(now, limit),
    suspendUnseen: (now) => seen!.suspendUnseen(now),
    beginRead: () => void begin.run(),
    endRead() {
      if (db.inTransaction) commit.run();
    },
    // Asked when a stepwise apply starts, outside any retry (which turns the timeout off meanwhile).
    waitsBriefly:
      host.waitsBriefly ??
      (() => (db.pragma('busy_timeout', { simple: true }) as number) <= SERVER_BUSY_TIMEOUT_MS),
    workDir: (name) => join(host.workDir ?? dirname(db.name), name),
    eventHead: () => eventHead.get()?.seq ?? 0,
    usage: (fromSeq, toSeq) => usage.iterate({ from: fromSeq, to: toSeq }),
    seats: () => seats.iterate(),
    manualEntitlements: () => manual.iterate(),
  };
}

import type { Db } from './db.ts';
import type { SeatRow } from './leases.ts';
import type { AuditRow } from './audit.ts';

/** An applied vendor bundle, as recorded. */
export interface SyncImportRow {
  seq: number;
  manifest_sha256: string;
  iss: string;
  kid: string;
  iat: number;
  exp: number;
  ack: number | null;
  records: number;
  imported_at: number;
  actor: string;
}

/** An export made by this server, as recorded. */
export interface SyncExportRow {
  seq: number;
  manifest_sha256: string;
  created_at: number;
  period_start: number;
  audit_seq: number;
  audit_hash: string;
  event_seq: number;
  clock_seq: number;
  records: number;
  file: string | null;
}

export interface UsageRow {
  entitlement_id: string;
  peak_in: number;
  carried: number;
  grants: number;
  denials: number;
  unique_subjects: number;
}

export type { SeatRow } from './leases.ts';

export interface ManualEntitlementRow {
  id: string;
  tenant_id: string;
  product_id: string;
  policy_json: string;
  starts_at: number;
  ends_at: number;
  status: string;
  external_id: string | null;
  created_at: number;
  updated_at: number;
}

/**
 * All SQL about BPSYNC/1: the import and export ledgers, permanent revocations, the snapshot
 * bookkeeping of an import, and the reads an export makes. Writes run inside the caller's
 * IMMEDIATE transaction.
 */
export function createSyncRepo(db: Db) {
  const lastImport = db.prepare<[], SyncImportRow>(
    'SELECT * FROM sync_imports ORDER BY seq DESC LIMIT 1',
  );
  const insertImport =
    db.prepare(`INSERT INTO sync_imports (seq, manifest_sha256, iss, kid, iat, exp, ack, records, imported_at, actor)
    VALUES (@seq, @manifest_sha256, @iss, @kid, @iat, @exp, @ack, @records, @imported_at, @actor)`);
  const lastExport = db.prepare<[], SyncExportRow>(
    'SELECT * FROM sync_exports ORDER BY seq DESC LIMIT 1',
  );
  const insertExport =
    db.prepare(`INSERT INTO sync_exports (seq, manifest_sha256, created_at, period_start, audit_seq, audit_hash, event_seq, clock_seq, records, file)
    VALUES (@seq, @manifest_sha256, @created_at, @period_start, @audit_seq, @audit_hash, @event_seq, @clock_seq, @records, @file)`);
  const isRevoked = db.prepare<[string], { one: number }>(
    'SELECT 1 AS one FROM sync_revocations WHERE entitlement_id = ?',
  );
  const revoke = db.prepare<[string, number, number]>(
    'INSERT OR IGNORE INTO sync_revocations (entitlement_id, seq, revoked_at) VALUES (?, ?, ?)',
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
  const usage = db.prepare<{ from: number; to: number }, UsageRow>(`
    WITH agg AS (
      SELECT entitlement_id,
             max(active_after) AS peak,
             sum(kind = 'grant') AS grants,
             sum(kind = 'deny') AS denials,
             count(DISTINCT CASE WHEN kind IN ('grant', 'renew') THEN subject_type || ':' || subject_id END) AS subjects
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
           coalesce(agg.subjects, 0) AS unique_subjects
    FROM entitlements e LEFT JOIN agg ON agg.entitlement_id = e.id
    ORDER BY e.seq`);
  const seats = db.prepare<[], SeatRow>(
    'SELECT * FROM seats ORDER BY entitlement_id, subject_type, subject_id',
  );
  const manual = db.prepare<[], ManualEntitlementRow>(
    "SELECT id, tenant_id, product_id, policy_json, starts_at, ends_at, status, external_id, created_at, updated_at FROM entitlements WHERE source = 'manual' ORDER BY seq",
  );
  const auditRange = db.prepare<[number, number], AuditRow>(
    'SELECT * FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq',
  );
  const auditAt = db.prepare<[number], AuditRow>('SELECT * FROM audit_log WHERE seq = ?');

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
    const mark = db.prepare<[string]>('INSERT OR IGNORE INTO temp.sync_seen (id) VALUES (?)');
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

  return {
    lastImport(): SyncImportRow | undefined {
      return lastImport.get();
    },
    recordImport(row: SyncImportRow): void {
      insertImport.run(row);
    },
    lastExport(): SyncExportRow | undefined {
      return lastExport.get();
    },
    recordExport(row: SyncExportRow): void {
      insertExport.run(row);
    },
    isRevoked(entitlementId: string): boolean {
      return isRevoked.get(entitlementId) !== undefined;
    },
    /** Records a permanent revocation; false when the id was revoked already. */
    revoke(entitlementId: string, seq: number, at: number): boolean {
      return revoke.run(entitlementId, seq, at).changes === 1;
    },
    revocationCount(): number {
      return revocationCount.get()!.n;
    },
    bundleCounts(): Record<'active' | 'suspended' | 'revoked', number> {
      const out = { active: 0, suspended: 0, revoked: 0 };
      for (const r of bundleCounts.all()) out[r.status as keyof typeof out] = r.n;
      return out;
    },
    /**
     * Starts the seen-set of an import. It lives in the connection's TEMP database, so it is written
     * without the main database's write lock; one import at a time per connection (the sync service
     * runs them in turn).
     */
    beginSnapshot(): void {
      seenTable().clear();
    },
    /** The active bundle entitlements the import has not listed (so far): what suspendUnseen would suspend. */
    unseen(): IterableIterator<string> {
      return seen!.unseen();
    },
    /** Marks an id as listed by the import; false when it was listed already (a duplicate). */
    markSeen(entitlementId: string): boolean {
      return seen!.mark(entitlementId);
    },
    /** suspendUnseen, at most `limit` of them (a step of a stepwise apply); returns how many. */
    suspendUnseenSome(now: number, limit: number): number {
      return seen!.suspendSome(now, limit);
    },
    /** Suspends the active bundle entitlements the import did not list; returns their ids. */
    suspendUnseen(now: number): string[] {
      return seen!.suspendUnseen(now);
    },
    eventHead(): number {
      return eventHead.get()?.seq ?? 0;
    },
    /** Usage per entitlement over lease events (fromSeq, toSeq]. */
    usage(fromSeq: number, toSeq: number): IterableIterator<UsageRow> {
      return usage.iterate({ from: fromSeq, to: toSeq });
    },
    seats(): IterableIterator<SeatRow> {
      return seats.iterate();
    },
    manualEntitlements(): IterableIterator<ManualEntitlementRow> {
      return manual.iterate();
    },
    auditRows(afterSeq: number, toSeq: number): IterableIterator<AuditRow> {
      return auditRange.iterate(afterSeq, toSeq);
    },
    auditRow(seq: number): AuditRow | undefined {
      return auditAt.get(seq);
    },
  };
}

export type SyncRepo = ReturnType<typeof createSyncRepo>;

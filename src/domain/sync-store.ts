/**
 * What BPSYNC/1 (src/sync/) needs from storage, declared here so that sync goes through the store
 * (`Store.sync`) and never builds storage objects of its own. src/storage/sync.ts implements it for
 * SQLite. Records keep the column names of their ledgers (snake_case): export bundles carry several
 * of them as they are (an audit row must be hashed exactly as stored).
 */

/** An applied vendor bundle, as recorded in the import ledger. Times in ms since the epoch. */
export interface SyncImportRecord {
  seq: number;
  manifest_sha256: string;
  iss: string;
  kid: string;
  iat: number;
  exp: number;
  /** The last export seq of this server the vendor had read, or null. */
  ack: number | null;
  records: number;
  imported_at: number;
  actor: string;
}

/** An export made by this server, as recorded in the export ledger. Times in ms since the epoch. */
export interface SyncExportRecord {
  seq: number;
  manifest_sha256: string;
  created_at: number;
  period_start: number;
  /** The audit chain head the export carried (seq and hash): `audit verify` checks it is still there. */
  audit_seq: number;
  audit_hash: string;
  /** The last lease event and clock event the export covered: the next one starts after them. */
  event_seq: number;
  clock_seq: number;
  records: number;
  /** The file written, or null for a temporary one (HTTP). */
  file: string | null;
}

/** Usage of one entitlement over a range of lease events (see SyncStore.usage). */
export interface SyncUsage {
  entitlement_id: string;
  /** The highest number of leases in force after an event of the range. */
  peak_in: number;
  /** Leases in force when the range began (0 for the first export). */
  carried: number;
  grants: number;
  denials: number;
  unique_subjects: number;
  /** Grants past max_seats (lease event flags): the vendor bills a true-up from them. */
  overdraft_grants: number;
  /** Borrows started. */
  borrows: number;
}

/** A named seat as an export lists it. */
export interface SyncSeat {
  id: string;
  entitlement_id: string;
  subject_type: string;
  subject_id: string;
  assigned_at: number;
  assigned_by: string;
}

/** A manual entitlement as an export lists it (policy_json as stored text). */
export interface SyncManualEntitlement {
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
 * The sync repository. Writes run inside the caller's transaction (`Store.tx`/`txAsync`), except
 * the seen-set of an import, which is the connection's own scratch space (see beginSnapshot).
 */
export interface SyncStore {
  lastImport(): SyncImportRecord | undefined;
  recordImport(row: SyncImportRecord): void;
  lastExport(): SyncExportRecord | undefined;
  recordExport(row: SyncExportRecord): void;

  /** True when the id is on the append-only list of permanent revocations. */
  isRevoked(entitlementId: string): boolean;
  /** Records a permanent revocation by bundle `seq` at `at` (ms); false when it was revoked already. */
  revoke(entitlementId: string, seq: number, at: number): boolean;
  revocationCount(): number;
  /** Bundle-managed entitlements per stored status. */
  bundleCounts(): Record<'active' | 'suspended' | 'revoked', number>;

  /**
   * Starts the seen-set of an import: the ids it lists, kept beside the connection (not in the
   * shared database), so a million-record snapshot costs disk pages, not heap, and is written
   * without the write lock. One import at a time per connection.
   */
  beginSnapshot(): void;
  /** Marks an id as listed by the import; false when it was listed already (a duplicate). */
  markSeen(entitlementId: string): boolean;
  /** The active bundle entitlements the import has not listed (so far): what suspendUnseen would suspend. */
  unseen(): IterableIterator<string>;
  /**
   * Suspends the active bundle entitlements the import did not list, at `now` (ms); returns their
   * ids. Active ones only: the snapshot's move of entitlement-rules.ts (a revoked one stays so).
   */
  suspendUnseen(now: number): string[];
  /** suspendUnseen, at most `limit` of them (a step of a stepwise apply); returns how many. */
  suspendUnseenSome(now: number, limit: number): number;

  /**
   * Opens a read snapshot without the write lock (a deferred transaction): the reads of one slice
   * of an import's preparing pass see one state. Close it with endRead before giving the event loop
   * back, so the connection's other users never find a transaction open.
   */
  beginRead(): void;
  /** Ends the read snapshot of beginRead, if one is open (a no-op otherwise). */
  endRead(): void;
  /**
   * True on a connection that waits only briefly for another process's lock (the serving process):
   * its work in steps keeps each step shorter, since a step holds the event loop too.
   */
  waitsBriefly(): boolean;
  /** A folder beside the database for sync's work files (`name` inside the data directory). */
  workDir(name: string): string;

  /** The seq of the newest lease event (0 when none). */
  eventHead(): number;
  /** Usage per entitlement over lease events (fromSeq, toSeq], in entitlement order. */
  usage(fromSeq: number, toSeq: number): IterableIterator<SyncUsage>;
  seats(): IterableIterator<SyncSeat>;
  manualEntitlements(): IterableIterator<SyncManualEntitlement>;
}

import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.ts';

export type Db = Database.Database;

/** The WAL is copied into the database (a checkpoint) when it reaches this size. */
const WAL_CHECKPOINT_BYTES = 64 << 20;
/** The page cache's ceiling, per connection. */
const CACHE_KIB = 32 * 1024;

export type Durability = 'full' | 'normal';

export interface OpenOptions {
  /** `full` (default): an answered write survives a power cut. `normal`: may lose the last commits on power loss. */
  durability?: Durability;
  /** The better-sqlite3 addon object, passed in by the single executable. */
  nativeBinding?: object | undefined;
  readonly?: boolean;
  /** Refuse to create a new database file. */
  mustExist?: boolean;
  /**
   * How long one statement may wait, blocking the thread, for another process's lock (SQLite's
   * busy handler sleeps on the event loop). Default CLI_BUSY_TIMEOUT_MS; the serving process passes
   * SERVER_BUSY_TIMEOUT_MS and waits longer asynchronously (group commit, Store.txAsync).
   * Migrations at open always get CLI_BUSY_TIMEOUT_MS.
   */
  busyTimeoutMs?: number;
}

/** A person runs the CLI and can wait: a lock held by the server is taken within these 5 s. */
export const CLI_BUSY_TIMEOUT_MS = 5000;
/**
 * The serving process blocks its event loop on another process's lock for at most this long per
 * statement (DESIGN "Process, files and resources": never more than ~50 ms). It absorbs another
 * process's short commits; a longer hold is waited for off the event loop, then answered 503 busy.
 * (Storage owns this value; the disk-full work may add pragmas beside it.)
 */
export const SERVER_BUSY_TIMEOUT_MS = 20;

export class DatabaseVersionError extends Error {}

/** Opens the database with the server's pragmas and applies pending migrations. */
export function openDatabase(file: string, opts: OpenOptions = {}): Db {
  const options: Database.Options = { timeout: CLI_BUSY_TIMEOUT_MS, fileMustExist: opts.mustExist ?? false };
  if (opts.readonly) options.readonly = true;
  if (opts.nativeBinding) (options as { nativeBinding?: unknown }).nativeBinding = opts.nativeBinding;
  const db = new Database(file, options);
  try {
    // 2 KiB pages for a new database (an existing one keeps its size): a grant dirties a handful of
    // index pages at random places, and each is written whole to the WAL at commit; halving the
    // page halves those bytes (grants in process: ~14k/s at 4 KiB, ~17k/s at 2 KiB). Must come
    // before WAL mode, which fixes the page size.
    if (!opts.readonly) db.pragma('page_size = 2048');
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${CLI_BUSY_TIMEOUT_MS}`);
    // Up to 32 MiB of pages in memory (SQLite's default is 2 MiB): the lease indexes outgrow 2 MiB
    // at some tens of thousands of leases, and every page missed is a read through the WAL index.
    // Taken only as pages are used, so it costs an idle server nothing.
    db.pragma(`cache_size = -${CACHE_KIB}`);
    // A longer WAL (up to ~64 MB) between checkpoints: pages written again and again (counters,
    // index leaves) are copied to the database once per checkpoint, not once per 16 MB.
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`wal_autocheckpoint = ${Math.floor(WAL_CHECKPOINT_BYTES / pageSize)}`);
    if (!opts.readonly) migrate(db);
    else checkVersion(db);
    // After the migrations, which may wait up to 5 s once at start: then the caller's own bound.
    if (opts.busyTimeoutMs !== undefined) db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs))}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

function currentVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function checkVersion(db: Db): void {
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  const have = currentVersion(db);
  if (have > latest) {
    throw new DatabaseVersionError(
      `the database schema is version ${have}, newer than this program knows (${latest}); use a newer bp-license-server`,
    );
  }
}

/** Applies each pending migration in its own IMMEDIATE transaction, so two processes never race. */
export function migrate(db: Db): void {
  checkVersion(db);
  for (const m of MIGRATIONS) {
    db.transaction(() => {
      if (currentVersion(db) >= m.version) return;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}

/** Runs fn in one IMMEDIATE transaction: the write lock is taken up front, so two writers never both read stale state. */
export function immediate<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}

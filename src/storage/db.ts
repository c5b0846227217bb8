import { closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { MIGRATIONS, registerMigrationFunctions, type MigrationNote } from './migrations.ts';
import {
  checkDatabaseFile,
  checkSchema,
  damagedDatabase,
  integrityProblems,
  isCorruption,
} from './integrity.ts';

export type Db = Database.Database;

/**
 * A connection copies the WAL into the database (a checkpoint, inside the commit that passes it)
 * when it reaches this size. The server turns this off on its serving connection and checkpoints
 * on a thread of its own (checkpointer.ts); CLI commands keep it.
 */
const WAL_CHECKPOINT_BYTES = 64 << 20;
/** A WAL started again from its beginning is cut back to this size (journal_size_limit): the file stays bounded. */
const WAL_KEEP_BYTES = 16 << 20;
/** The page cache's ceiling, per connection. */
const CACHE_KIB = 32 * 1024;

export type Durability = 'full' | 'normal';

export interface OpenOptions {
  /** `full` (default): an answered write survives a power cut. `normal`: may lose the last commits on power loss. */
  durability?: Durability;
  /** The better-sqlite3 addon object, passed in by the single executable. */
  nativeBinding?: object | undefined;
  readonly?: boolean;
  /**
   * An existing server's database: refuse a missing, empty, truncated or foreign file, or one
   * without the expected schema, instead of creating or migrating one (see integrity.ts).
   */
  mustExist?: boolean;
  /** With mustExist: run PRAGMA quick_check before migrating, and refuse a damaged file. */
  quickCheck?: boolean;
  /** The clock that dates what a migration writes (its audit rows); the system clock when absent. */
  now?: () => number;
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
 * statement (docs/design.md "Process, files and resources": never more than ~50 ms). It absorbs another
 * process's short commits; a longer hold is waited for off the event loop, then answered 503 busy.
 * (Storage owns this value; the disk-full work may add pragmas beside it.)
 */
export const SERVER_BUSY_TIMEOUT_MS = 20;

export type { MigrationNote } from './migrations.ts';

// What the migrations run by this connection had to say (e.g. subjects merged by 0007), for the
// process that opened it to log or print. Empty when the database was up to date.
const notesByDb = new WeakMap<Db, MigrationNote[]>();

/** The notes of the migrations this connection applied when it was opened (none when it applied none). */
export function migrationNotes(db: Db): readonly MigrationNote[] {
  return notesByDb.get(db) ?? [];
}

export class DatabaseVersionError extends Error {}

/** Opens the database with the server's pragmas and applies pending migrations. */
export function openDatabase(file: string, opts: OpenOptions = {}): Db {
  const options: Database.Options = {
    timeout: CLI_BUSY_TIMEOUT_MS,
    fileMustExist: opts.mustExist ?? false,
  };
  if (opts.readonly) options.readonly = true;
  if (opts.nativeBinding)
    (options as { nativeBinding?: unknown }).nativeBinding = opts.nativeBinding;
  const { db, notes: openNotes } = openChecked(file, options, opts);
  if (openNotes.length > 0) notesByDb.set(db, openNotes);
  try {
    // 2 KiB pages for a new database (an existing one keeps its size): a grant dirties a handful of
    // index pages at random places, and each is written whole to the WAL at commit; halving the
    // page halves those bytes (bench/README.md, "Why the code is as it is": page size). Must
    // come before WAL mode, which fixes the page size.
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
    db.pragma(`journal_size_limit = ${WAL_KEEP_BYTES}`);
    if (!opts.readonly) {
      const notes = migrate(db, opts.now ?? Date.now);
      if (notes.length > 0) notesByDb.set(db, [...openNotes, ...notes]);
    } else checkVersion(db);
    if (opts.mustExist) checkSchema(db, file, opts.nativeBinding);
    // After the migrations, which may wait up to 5 s once at start: then the caller's own bound.
    if (opts.busyTimeoutMs !== undefined)
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs))}`);
  } catch (err) {
    db.close();
    if (isCorruption(err))
      throw damagedDatabase(
        file,
        'open',
        `is damaged: ${(err as Error).message}; refusing to start`,
      );
    throw err;
  }
  return db;
}

/**
 * Opens the file: a new one is made 0600 first (SQLite keeps an existing file's mode and gives the
 * -wal and -shm files the database's mode, and every lease id in them is a bearer credential); an
 * existing server's one is checked before any pragma (journal_mode = WAL would rewrite the header
 * of a file that is not ours).
 */
function openChecked(
  file: string,
  options: Database.Options,
  opts: OpenOptions,
): { db: Db; notes: MigrationNote[] } {
  const notes = opts.mustExist ? checkDatabaseFile(file) : [];
  if (!opts.mustExist && !opts.readonly && file !== ':memory:' && file !== '' && !existsSync(file))
    closeSync(openSync(file, 'wx', 0o600));
  let db: Db | undefined;
  try {
    db = new Database(file, options);
    if (opts.mustExist) checkExisting(db, file, opts);
    return { db, notes };
  } catch (err) {
    db?.close();
    if (isCorruption(err))
      throw damagedDatabase(
        file,
        'open',
        `cannot be read: ${(err as Error).message}; refusing to start`,
      );
    throw err;
  }
}

/** An existing server's database, before anything is written to it: initialised, and (if asked) not damaged. */
function checkExisting(db: Db, file: string, opts: OpenOptions): void {
  if (currentVersion(db) === 0) {
    // init writes the schema before it reports success; version 0 is a foreign or blank file.
    throw damagedDatabase(
      file,
      'schema',
      "holds no license server schema (schema version 0): it is not this server's database; refusing to start",
    );
  }
  if (opts.quickCheck) {
    const problems = integrityProblems(db, 'quick_check');
    if (problems.length > 0) {
      throw damagedDatabase(
        file,
        'quick_check',
        `is damaged (PRAGMA quick_check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; …' : ''}); refusing to start`,
        { problems },
      );
    }
  }
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

/**
 * Applies each pending migration in its own IMMEDIATE transaction, so two processes never race: its
 * SQL, then its JS step when it has one (work SQLite cannot do, such as writing to the audit chain).
 * Returns the notes the migrations left for the operator.
 */
export function migrate(db: Db, now: () => number = Date.now): MigrationNote[] {
  checkVersion(db);
  const notes: MigrationNote[] = [];
  if (currentVersion(db) < (MIGRATIONS.at(-1)?.version ?? 0)) registerMigrationFunctions(db);
  for (const m of MIGRATIONS) {
    db.transaction(() => {
      if (currentVersion(db) >= m.version) return;
      db.exec(m.sql);
      if (m.after) notes.push(...m.after(db, { now }));
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return notes;
}

/** Runs fn in one IMMEDIATE transaction: the write lock is taken up front, so two writers never both read stale state. */
export function immediate<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}

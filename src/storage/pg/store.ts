/**
 * The PostgreSQL store: the same repositories as SQLite's (src/storage/*.ts, one set of SQL, run
 * through the synchronous driver in driver.ts), and PostgreSQL's own ways to group writes.
 *
 * Exactness across server processes: every write transaction takes one cluster-wide advisory lock
 * (WRITE_LOCK) first, so writers take turns as SQLite's do (BEGIN IMMEDIATE), and every read after
 * it sees every commit before it (READ COMMITTED takes a snapshot per statement). Seats, quotas, the
 * time guard and the audit chain are then decided by the same domain code as on SQLite, with the
 * same answers, whichever process a request reaches. The group commit makes each turn carry many
 * grants, and PostgreSQL's own commit is durable (synchronous_commit on, fsync per commit).
 *
 * Another process holding the lock: a server's statement waits at most `lockTimeoutMs` (the event
 * loop blocked that long at most, like SQLite's busy timeout), then the write waits on timers and
 * tries again, up to BUSY_RETRY_DEADLINE_MS, then answers `503 busy`. PostgreSQL unreachable: every
 * statement fails fast with UNAVAILABLE (503 storage_unavailable), and the next one connects again.
 */
import { AppError } from '../../errors.ts';
import type { Db } from '../db.ts';
import type { Store as DomainStore, TxAsyncOptions } from '../../domain/store.ts';
import { createStateRepo } from '../state.ts';
import { createSyncRepo } from '../sync.ts';
import { createRepos, type Repos } from '../repos.ts';
import type { SyncStore } from '../../domain/sync-store.ts';
import { BUSY_RETRY_DEADLINE_MS, retryDelay } from '../busy.ts';
import { openPg, PgError, type PgDb, type PgOptions } from './driver.ts';
import { migratePg } from './migrate.ts';
import { createPgGroupCommit } from './group-commit.ts';

/** The advisory lock every write transaction holds (any 64-bit key; this one spells "bpls"). */
export const WRITE_LOCK = 0x62706c73;

/** A server's statement waits this long for another process's write lock, blocking (ms). */
export const SERVER_LOCK_TIMEOUT_MS = 50;
/** A CLI command's does (a person can wait; the server's turns are short). */
export const CLI_LOCK_TIMEOUT_MS = 5000;
/** A server's statement unanswered this long: PostgreSQL counts as unreachable (ms). */
export const SERVER_CALL_TIMEOUT_MS = 5000;
/** A CLI command's: past its lock wait, so a busy lock is reported busy, not unreachable (ms). */
export const CLI_CALL_TIMEOUT_MS = 15_000;

/** PostgreSQL's answer "lock_not_available" (lock_timeout passed), and the other retryable ones. */
export function isPgBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '55P03' || code === '40P01' || code === '40001';
}

export interface PgStoreOptions extends PgOptions {
  /** The data directory (identity files, import work files): shared by nothing but this node. */
  dataDir: string;
  lockTimeoutMs?: number;
}

export interface PgStore extends Omit<DomainStore, keyof Repos>, Repos {
  readonly kind: 'postgres';
  /** The connection string, any password replaced. */
  readonly file: string;
  readonly pg: PgDb;
  /** The driver as the repositories see it: for storage modules and tests only (scripts/lint.mjs). */
  readonly db: Db;
  /** A cheap round trip on the writer connection, off the event loop: readiness and probes. */
  ping(): Promise<void>;
  /** What the migrations want said: nothing on PostgreSQL (its schema starts whole). */
  migrationNotes(): readonly [];
  /**
   * SQLite's page checks have no PostgreSQL counterpart here: PostgreSQL checks its own pages
   * (data checksums, amcheck). Always [] (audit verify still verifies the audit chain).
   */
  integrityProblems(kind: 'quick_check' | 'integrity_check'): string[];
  /** @throws AppError `invalid_request`: a PostgreSQL database is backed up with PostgreSQL's tools. */
  backupTo(file: string): Promise<unknown>;
  close(): void;
}

/**
 * Connects (lazily), applies the migrations under an advisory lock and returns the store.
 * @throws AppError `storage_unavailable` when PostgreSQL cannot be reached at start (with the URL,
 *   password hidden), `conflict` when the database was made by a newer version.
 */
export function openPgStore(url: string, opts: PgStoreOptions): PgStore {
  const pg = openPg(url, { callTimeoutMs: CLI_CALL_TIMEOUT_MS, ...opts });
  try {
    migratePg(pg);
  } catch (err) {
    pg.close();
    if (err instanceof PgError && err.code === 'BPLS_PG_UNAVAILABLE') {
      throw new AppError(
        'storage_unavailable',
        `cannot reach PostgreSQL at ${pg.name}: ${err.message}`,
        { database: pg.name },
        'check that PostgreSQL runs and that --database (or BPLS_DATABASE_URL) names it',
      );
    }
    throw err;
  }
  return createPgStore(pg, opts);
}

function createPgStore(pg: PgDb, opts: PgStoreOptions): PgStore {
  const lockTimeoutMs = opts.lockTimeoutMs ?? CLI_LOCK_TIMEOUT_MS;
  // The repositories take better-sqlite3's connection type; the driver answers the part of it they
  // use (prepare/get/all/run/iterate/pluck, exec, inTransaction), as the PostgreSQL tests prove.
  const db = pg as unknown as Db;
  const listeners: Array<() => void> = [];
  // The rollback listeners re-read what is stored (the time guard's mark). When PostgreSQL is
  // unreachable they cannot, and a throw here would escape the group commit's flush (an unhandled
  // rejection: the process dies). So a rollback whose listeners failed is heard again by the next
  // transaction, under its lock, before anything else reads or writes.
  let unheardRollback = false;
  const rolledBack = () => {
    try {
      for (const l of listeners) l();
      unheardRollback = false;
    } catch {
      unheardRollback = true;
    }
  };
  const begin = (timeoutMs: number) => {
    pg.exec(
      `BEGIN; SET LOCAL lock_timeout = '${Math.max(1, Math.round(timeoutMs))}ms'; SELECT pg_advisory_xact_lock(${WRITE_LOCK})`,
    );
    if (unheardRollback) {
      for (const l of listeners) l();
      unheardRollback = false;
    }
  };
  const rollback = () => {
    try {
      pg.exec('ROLLBACK');
    } catch {
      // The connection is gone: PostgreSQL rolled it back itself.
    }
  };
  let depth = 0;
  /**
   * Runs fn in one locked transaction, waiting at most timeoutMs for the lock (blocking). Inside
   * an open transaction fn runs under a savepoint, as better-sqlite3 nests transactions: its
   * refusal undoes its own writes only.
   */
  function locked<T>(fn: () => T, timeoutMs: number): T {
    if (pg.inTransaction) {
      const name = `nested_${++depth}`;
      pg.exec(`SAVEPOINT ${name}`);
      try {
        const value = fn();
        pg.exec(`RELEASE SAVEPOINT ${name}`);
        return value;
      } catch (err) {
        if (pg.inTransaction) {
          pg.exec(`ROLLBACK TO SAVEPOINT ${name}`);
          pg.exec(`RELEASE SAVEPOINT ${name}`);
        }
        throw err;
      } finally {
        depth--;
      }
    }
    try {
      begin(timeoutMs);
      const value = fn();
      pg.exec('COMMIT');
      return value;
    } catch (err) {
      if (pg.inTransaction) rollback();
      rolledBack();
      throw err;
    }
  }
  // The state version (see dataVersion): read once per transaction (any BEGIN, read-only ones
  // included: the driver counts them); under the write lock nobody else changes it.
  let versionTx = -1;
  let version = 0;
  const versionStmt = pg.prepare('SELECT value FROM state_version').pluck();
  let sync: SyncStore | undefined;
  const repos = createRepos(db);
  const store: PgStore = {
    kind: 'postgres',
    pg,
    db,
    file: pg.name,
    ...repos,
    state: memoizedState(
      repos.state,
      pg,
      () => store.dataVersion(),
      (l) => listeners.push(l),
    ),
    get sync() {
      return (sync ??= createSyncRepo(db, {
        workDir: opts.dataDir,
        waitsBriefly: () => lockTimeoutMs <= SERVER_LOCK_TIMEOUT_MS,
      }));
    },
    tx: (fn) => {
      return locked(fn, lockTimeoutMs);
    },
    async txAsync(fn, o: TxAsyncOptions = {}) {
      const deadline = Date.now() + (o.deadlineMs ?? BUSY_RETRY_DEADLINE_MS);
      for (let n = 1; ; n++) {
        try {
          // Never block long: a busy lock is waited for on timers.
          return locked(fn, Math.min(lockTimeoutMs, SERVER_LOCK_TIMEOUT_MS));
        } catch (err) {
          if (!isPgBusy(err) || Date.now() >= deadline) throw err;
        }
        await new Promise((r) => setTimeout(r, retryDelay(n)));
      }
    },
    batch: createPgGroupCommit(pg, {
      begin: () => {
        begin(SERVER_LOCK_TIMEOUT_MS);
      },
      rollback,
      onRollback: rolledBack,
    }),
    onRollback: (listener) => void listeners.push(listener),
    /**
     * Changes when the server state or the clock events change (a trigger bumps state_version), in
     * any process; ours too, which only costs the time guard a re-read. Read once per transaction:
     * under the write lock nobody else changes it.
     */
    dataVersion() {
      if (pg.inTransaction && versionTx === pg.txSerial) return version;
      version = Number(versionStmt.get());
      versionTx = pg.inTransaction ? pg.txSerial : -1;
      return version;
    },
    async ping() {
      await pg.queryAsync('SELECT 1');
    },
    migrationNotes: () => [],
    integrityProblems: () => [],
    backupTo: () =>
      Promise.reject(
        new AppError(
          'invalid_request',
          `the server runs on PostgreSQL (${pg.name}): back it up with PostgreSQL's own tools`,
          { database: pg.name },
          'pg_dump (or your PostgreSQL backup: base backups and WAL archiving), and keep a copy of the data directory (server.key, server.json)',
        ),
      ),
    close: () => pg.close(),
  };
  return store;
}

/**
 * The state repository with its reads remembered inside a transaction (settings such as the vendor's
 * lease lifetime are read per grant; a round trip each on PostgreSQL). Sound because the write
 * lock is held: only this transaction changes server_state meanwhile, and its own writes (set,
 * delete) and any rollback forget what was remembered; a change by another process moves the state
 * version, read once at the start of the next transaction.
 */
function memoizedState<S extends ReturnType<typeof createStateRepo>>(
  base: S,
  pg: PgDb,
  version: () => number,
  onRollback: (l: () => void) => void,
): S {
  const memo = new Map<string, string | undefined>();
  let memoVersion = -1;
  let memoUndone = pg.undone;
  onRollback(() => memo.clear());
  const forget = <A extends unknown[], R>(f: (...a: A) => R) =>
    ((...a: A) => {
      memo.clear();
      return f(...a);
    }) as (...a: A) => R;
  return {
    ...base,
    get(key: string): string | undefined {
      if (!pg.inTransaction) return base.get(key);
      const v = version();
      // Another transaction's state, or writes of this one undone (a savepoint rolled back).
      if (v !== memoVersion || pg.undone !== memoUndone) {
        memo.clear();
        memoVersion = v;
        memoUndone = pg.undone;
      }
      if (memo.has(key)) return memo.get(key);
      const value = base.get(key);
      memo.set(key, value);
      return value;
    },
    set: forget(base.set),
    delete: forget(base.delete),
  };
}

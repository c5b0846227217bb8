import {
  immediate,
  migrationNotes,
  openDatabase,
  type Db,
  type MigrationNote,
  type OpenOptions,
} from './db.ts';
import { integrityProblems } from './integrity.ts';
import { createGroupCommit } from './group-commit.ts';
import { createRepos, type Repos } from './repos.ts';
import { createSyncRepo } from './sync.ts';
import type { SyncStore } from '../domain/sync-store.ts';
import { retryWhileBusy } from './busy.ts';
import type { Store as DomainStore } from '../domain/store.ts';

export type { TxAsyncOptions } from '../domain/store.ts';

/**
 * The SQLite store: the domain's store seam (src/domain/store.ts) with the concrete repositories,
 * which carry a few extra reads and writes for sync, /metrics and the audit route, and what only
 * the process needs (the connection, closing). No SQL leaves storage/.
 *
 * tx() waits for another process's lock only as long as the connection's busy timeout (short in
 * the server: then the SQLITE_BUSY error is answered `503 busy`), so admin writes never freeze the
 * event loop; txAsync() waits on timers (the event loop free) up to `deadlineMs`
 * (BUSY_RETRY_DEADLINE_MS by default); `lazySync` commits that one transaction with
 * synchronous=NORMAL (a WAL is written in order: a later durable commit makes it durable too).
 * batch() is the group commit (group-commit.ts).
 */
export interface Store extends Omit<DomainStore, keyof Repos>, Repos {
  readonly kind: 'sqlite';
  /** The database file's path. */
  readonly file: string;
  /** What the migrations run when this store opened want said (merged subjects, …). */
  migrationNotes(): readonly MigrationNote[];
  /** PRAGMA quick_check / integrity_check: the problems found, [] when none (integrity.ts). */
  integrityProblems(kind: 'quick_check' | 'integrity_check'): string[];
  /** An online copy of the database into `file` (SQLite's backup API; the file must exist, 0600). */
  backupTo(file: string): Promise<unknown>;
  close(): void;
  /** The connection, for storage modules only (scripts/lint.mjs refuses `store.db` elsewhere). */
  readonly db: Db;
}

export function createStore(db: Db): Store {
  // Prepared once: db.pragma() prepares its statement on every call, and this is asked per grant.
  const dataVersion = db.prepare('PRAGMA data_version').pluck();
  const synchronous = db.pragma('synchronous', { simple: true }) as number;
  const listeners: Array<() => void> = [];
  const rolledBack = () => {
    for (const l of listeners) l();
  };
  // Made on first use: most connections (CLI commands, the checkpointer) never sync, and it creates
  // a TEMP table and prepares its statements.
  let sync: SyncStore | undefined;
  return {
    kind: 'sqlite',
    db,
    ...createRepos(db),
    get sync() {
      return (sync ??= createSyncRepo(db));
    },
    tx: (fn) => {
      try {
        return immediate(db, fn);
      } catch (err) {
        rolledBack();
        throw err;
      }
    },
    // A BEGIN refused as busy ran nothing, and a busy error cannot come later (the lock is held):
    // each try is whole or nothing, so trying again is safe.
    txAsync: (fn, o = {}) =>
      retryWhileBusy(
        db,
        () => {
          if (o.lazySync) db.pragma('synchronous = NORMAL');
          try {
            return immediate(db, fn);
          } catch (err) {
            rolledBack();
            throw err;
          } finally {
            // Back before anything else runs on this connection (the group commit keeps its durability).
            if (o.lazySync) db.pragma(`synchronous = ${synchronous}`);
          }
        },
        o.deadlineMs,
      ),
    batch: createGroupCommit(db, { onRollback: rolledBack }),
    onRollback: (listener) => void listeners.push(listener),
    dataVersion: () => dataVersion.get() as number,
    file: db.name,
    migrationNotes: () => migrationNotes(db),
    integrityProblems: (kind) => integrityProblems(db, kind),
    backupTo: (file) => db.backup(file),
    close: () => {
      if (db.open) db.close();
    },
  };
}

export function openStore(file: string, opts: OpenOptions = {}): Store {
  return createStore(openDatabase(file, opts));
}

/** Either store the server runs on: SQLite in the data directory, or PostgreSQL (storage/pg/). */
export type AnyStore = Store | import('./pg/store.ts').PgStore;

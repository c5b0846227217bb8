import { immediate, openDatabase, type Db, type OpenOptions } from './db.ts';
import { createEntitlementRepo } from './entitlements.ts';
import { createApiTokenRepo } from './api-tokens.ts';
import { createAuditRepo } from './audit.ts';
import { createStateRepo } from './state.ts';
import { createLeaseRepo, createSeatRepo } from './leases.ts';
import { createGroupCommit } from './group-commit.ts';
import { createUsageRepo } from './usage.ts';
import { createSyncRepo } from './sync.ts';
import type { SyncStore } from '../domain/sync-store.ts';
import { retryWhileBusy } from './busy.ts';

export interface TxAsyncOptions {
  /** How long to wait for another process's lock (ms); BUSY_RETRY_DEADLINE_MS by default. */
  deadlineMs?: number;
  /**
   * Commit without waiting for the disk (synchronous=NORMAL for this one commit): a power cut may
   * lose it. Only for a step that is written again when lost, and that a later durable commit
   * covers (a WAL is written in order: a durable commit makes every earlier one durable too).
   */
  lazySync?: boolean;
}

/** The storage face the domain uses: repositories and a write transaction. No SQL leaves storage/. */
export interface Store {
  entitlements: ReturnType<typeof createEntitlementRepo>;
  apiTokens: ReturnType<typeof createApiTokenRepo>;
  audit: ReturnType<typeof createAuditRepo>;
  state: ReturnType<typeof createStateRepo>;
  leases: ReturnType<typeof createLeaseRepo>;
  seats: ReturnType<typeof createSeatRepo>;
  usage: ReturnType<typeof createUsageRepo>;
  /** BPSYNC/1's ledgers, revocations and import bookkeeping (made on first use). */
  readonly sync: SyncStore;
  /**
   * Runs fn in one IMMEDIATE transaction (the write lock taken up front). Waits for another
   * process's lock only as long as the connection's busy timeout (short in the server: then the
   * SQLITE_BUSY error is answered `503 busy`), so admin writes never freeze the event loop.
   */
  tx<T>(fn: () => T): T;
  /**
   * tx(), but a lock held by another process is waited for on timers (the event loop free), up to
   * `deadlineMs` (BUSY_RETRY_DEADLINE_MS by default), then the busy error is thrown. For work that
   * prepared everything outside the lock and only applies here (imports).
   */
  txAsync<T>(fn: () => T, opts?: TxAsyncOptions): Promise<T>;
  /**
   * Runs fn inside a shared group-commit transaction; settles after the commit. A refusal should
   * throw before fn writes anything: one thrown after a write is still undone alone, but costs the
   * whole batch a second run, piece by piece. So fn may run twice, and its effects belong in the
   * database, not in memory.
   */
  batch<T>(fn: () => T): Promise<T>;
  /**
   * Calls `listener` after a write transaction of this connection was rolled back (a refused
   * tx(), a batch run again or lost), for state kept in memory beside the database.
   */
  onRollback(listener: () => void): void;
  /** PRAGMA data_version: changes when another connection commits (ours do not change it). */
  dataVersion(): number;
  close(): void;
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
    db,
    entitlements: createEntitlementRepo(db),
    apiTokens: createApiTokenRepo(db),
    audit: createAuditRepo(db),
    state: createStateRepo(db),
    leases: createLeaseRepo(db),
    seats: createSeatRepo(db),
    usage: createUsageRepo(db),
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
    close: () => {
      if (db.open) db.close();
    },
  };
}

export function openStore(file: string, opts: OpenOptions = {}): Store {
  return createStore(openDatabase(file, opts));
}

import * as path from 'node:path';
import type { Logger } from '../log.ts';
import type { AnyStore, Store } from './store.ts';
import type { PgStore } from './pg/store.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import { createStorageHealth, type StorageHealth } from './health.ts';
import { sqliteAddonFile } from './native.ts';

/** The serving process's care of its storage: episodes of unwritable storage, and the WAL. */
export interface StorageUpkeep {
  health: StorageHealth;
  /** SQLite's WAL checkpoint thread (none on PostgreSQL, which checkpoints itself). */
  checkpointer?: Checkpointer;
  /** Stops the checkpoint thread and the probes; call before closing the serving connection. */
  close(): Promise<void>;
}

/**
 * Starts the checkpoint thread (checkpointer.ts) and the storage-episode tracker (health.ts) for
 * the serving connection `db` of the database `file`. A checkpoint that fails for a storage reason
 * counts in the episode; an episode's end has the WAL copied and cut to zero (a WAL that filled the
 * disk gives its space back).
 */
export function startStorageUpkeep(opts: { store: AnyStore; log: Logger }): StorageUpkeep {
  if (opts.store.kind === 'postgres') return pgUpkeep(opts.store, opts.log);
  return sqliteUpkeep(opts.store, opts.log);
}

/**
 * On PostgreSQL: unreachable (or full) database episodes, probed by a small durable write of one
 * server_state row; PostgreSQL checkpoints itself.
 */
function pgUpkeep(store: PgStore, log: Logger): StorageUpkeep {
  const health = storageHealthOf(store, log);
  return {
    health,
    async close() {
      health.close();
    },
  };
}

function sqliteUpkeep(store: Store, log: Logger): StorageUpkeep {
  const opts = { store, log };
  let checkpointer: Checkpointer | undefined;
  const health = storageHealthOf(opts.store, opts.log, () => checkpointer?.truncate());
  health.checkSpace();
  checkpointer = startCheckpointer({
    db: opts.store.db,
    file: opts.store.file,
    addonFile: sqliteAddonFile(),
    log: opts.log,
    onFailure: (err) => {
      if (!health.failed(err))
        opts.log.warn('WAL checkpoint failed; will retry', { error: err.message.slice(0, 300) });
    },
  });
  return {
    health,
    checkpointer,
    async close() {
      health.close();
      await checkpointer!.close();
    },
  };
}

/**
 * The storage health of a store's connection (health.ts): full or read-only storage as episodes.
 * `onRecovered` runs when an episode ends.
 */
export function storageHealthOf(
  store: AnyStore,
  log: Logger,
  onRecovered?: () => void,
): StorageHealth {
  if (store.kind === 'postgres') {
    return createStorageHealth({
      dir: path.dirname(store.sync.workDir('probe')),
      localDisk: false,
      log,
      probeWrite: () => store.tx(() => store.state.set('storage_probe', String(Date.now()))),
    });
  }
  return createStorageHealth({
    db: store.db,
    dir: path.dirname(store.file),
    log,
    ...(onRecovered ? { onRecovered } : {}),
  });
}

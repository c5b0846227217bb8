import * as path from 'node:path';
import type { Logger } from '../log.ts';
import type { Db } from './db.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import { createStorageHealth, type StorageHealth } from './health.ts';
import { sqliteAddonFile } from './native.ts';

/** The serving process's care of its storage: episodes of unwritable storage, and the WAL. */
export interface StorageUpkeep {
  health: StorageHealth;
  checkpointer: Checkpointer;
  /** Stops the checkpoint thread and the probes; call before closing the serving connection. */
  close(): Promise<void>;
}

/**
 * Starts the checkpoint thread (checkpointer.ts) and the storage-episode tracker (health.ts) for
 * the serving connection `db` of the database `file`. A checkpoint that fails for a storage reason
 * counts in the episode; an episode's end has the WAL copied and cut to zero (a WAL that filled the
 * disk gives its space back).
 */
export function startStorageUpkeep(opts: { db: Db; file: string; log: Logger }): StorageUpkeep {
  let checkpointer: Checkpointer | undefined;
  const health = createStorageHealth({
    db: opts.db,
    dir: path.dirname(opts.file),
    log: opts.log,
    onRecovered: () => checkpointer?.truncate(),
  });
  health.checkSpace();
  checkpointer = startCheckpointer({
    db: opts.db,
    file: opts.file,
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
      await checkpointer.close();
    },
  };
}

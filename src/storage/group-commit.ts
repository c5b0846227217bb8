import type { Db } from './db.ts';

interface Item {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit: write work that arrives in the same turn of the event loop runs in one IMMEDIATE
 * transaction, one fsync for the lot. Each piece runs in its own savepoint, so one that throws is
 * rolled back alone; every promise settles only after the commit, so an answer never runs ahead of
 * the disk.
 */
export function createGroupCommit(db: Db, opts: { maxBatch?: number } = {}) {
  const maxBatch = opts.maxBatch ?? 512;
  // Prepared once: better-sqlite3's db.transaction() builds four wrappers per call, too dear per grant.
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT grouped_item');
  const release = db.prepare('RELEASE grouped_item');
  const rollbackTo = db.prepare('ROLLBACK TO grouped_item');
  let queue: Item[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    const batch = queue.length > maxBatch ? queue.splice(0, maxBatch) : queue;
    if (batch === queue) queue = [];
    if (queue.length > 0) schedule();
    const results: Array<{ ok: boolean; value: unknown }> = new Array(batch.length);
    try {
      begin.run();
      try {
        for (let i = 0; i < batch.length; i++) {
          savepoint.run();
          try {
            results[i] = { ok: true, value: batch[i]!.fn() };
            release.run();
          } catch (err) {
            rollbackTo.run();
            release.run();
            results[i] = { ok: false, value: err };
          }
        }
        commit.run();
      } catch (err) {
        if (db.inTransaction) rollback.run();
        throw err;
      }
    } catch (err) {
      // The commit itself failed (disk full, lock timeout): nothing of the batch is on disk.
      for (const item of batch) item.reject(err);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      if (r.ok) batch[i]!.resolve(r.value);
      else batch[i]!.reject(r.value);
    }
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  }

  return function run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      schedule();
    });
  };
}

import { BUSY_RETRY_DEADLINE_MS, retryDelay } from '../busy.ts';
import type { PgDb } from './driver.ts';
import {
  runWithSavepoints,
  runWithoutSavepoints,
  settle,
  type BatchItem,
  type Outcome,
} from '../batch.ts';
import { isPgBusy } from './store.ts';

interface Item extends BatchItem {
  /** When it joined the queue (ms), for the busy deadline. */
  at: number;
}

/**
 * Group commit on PostgreSQL: the pieces that arrive within two turns of the event loop run in one
 * transaction holding the write lock (`begin`), and their promises settle after its COMMIT, so an
 * answer never runs ahead of the database. The COMMIT is awaited off the event loop: requests keep
 * arriving and queue for the next batch meanwhile (one batch in flight per process).
 *
 * As in storage/group-commit.ts, pieces run without a savepoint each; a piece that throws having
 * written nothing (every refusal checks before it writes) is dropped alone. One that throws after
 * writing, or a COMMIT refused for a write's failure (its writes are sent without waiting, see
 * driver.ts), has the batch rolled back and run again with a savepoint per piece, so only that
 * piece fails. Busy (another process held the lock past its timeout): the batch waits on timers
 * and tries again; a piece that waited BUSY_RETRY_DEADLINE_MS is refused with the busy error.
 */
export function createPgGroupCommit(
  pg: PgDb,
  opts: { begin: () => void; rollback: () => void; onRollback: () => void; maxBatch?: number },
) {
  const maxBatch = opts.maxBatch ?? 512;
  let queue: Item[] = [];
  let scheduled = false;
  let busy = false;
  let waiting = false;
  let busyTries = 0;

  function abort(): void {
    if (pg.inTransaction) opts.rollback();
    opts.onRollback();
  }

  const runFast = (batch: Item[]) =>
    runWithoutSavepoints(batch, {
      written: () => pg.writes,
      inTransaction: () => pg.inTransaction,
      abort,
    });
  // RELEASE waits for the answer: a write of the piece sent without waiting fails there.
  const runCareful = (batch: Item[]) =>
    runWithSavepoints(batch, {
      savepoint: () => pg.exec('SAVEPOINT grouped_item'),
      release: () => pg.exec('RELEASE SAVEPOINT grouped_item'),
      rollbackTo: () => pg.exec('ROLLBACK TO SAVEPOINT grouped_item'),
    });

  function fail(batch: Item[], err: unknown): void {
    for (const item of batch) item.reject(err);
  }

  async function flush(): Promise<void> {
    scheduled = false;
    if (busy || waiting || queue.length === 0) return;
    const batch = queue.length > maxBatch ? queue.splice(0, maxBatch) : queue;
    if (batch === queue) queue = [];
    busy = true;
    try {
      let careful = false;
      let results: Outcome[] | null;
      try {
        opts.begin();
      } catch (err) {
        abort();
        if (isPgBusy(err)) return retryLater(batch);
        return fail(batch, err);
      }
      busyTries = 0;
      try {
        results = runFast(batch);
        if (results === null) {
          careful = true;
          opts.begin();
          results = runCareful(batch);
        }
      } catch (err) {
        // The transaction itself failed (connection lost, lock timeout in the careful rerun).
        abort();
        return fail(batch, err);
      }
      try {
        await pg.queryAsync('COMMIT');
      } catch (err) {
        opts.onRollback();
        if (careful || isUnavailable(err)) return fail(batch, err);
        // A write sent without waiting failed: run the batch again, each piece on its own.
        try {
          opts.begin();
          results = runCareful(batch);
          await pg.queryAsync('COMMIT');
        } catch (again) {
          abort();
          return fail(batch, again);
        }
      }
      settle(batch, results);
    } finally {
      busy = false;
      if (queue.length > 0) schedule();
    }
  }

  /** Another process held the lock past its timeout: try again on a timer. */
  function retryLater(batch: Item[]): void {
    const now = Date.now();
    const stale = batch.filter((i) => now - i.at >= BUSY_RETRY_DEADLINE_MS);
    const keep =
      stale.length === 0 ? batch : batch.filter((i) => now - i.at < BUSY_RETRY_DEADLINE_MS);
    if (stale.length > 0) {
      const err = Object.assign(
        new Error(
          'the database is busy (another server process held the write lock past the wait deadline)',
        ),
        { code: '55P03' },
      );
      fail(stale, err);
    }
    queue = keep.concat(queue);
    if (queue.length === 0) return;
    waiting = true;
    setTimeout(() => {
      waiting = false;
      void flush();
    }, retryDelay(++busyTries));
  }

  function schedule(): void {
    if (scheduled || waiting || busy) return;
    scheduled = true;
    // As on SQLite: one more turn, so requests whose bytes arrived meanwhile join the batch.
    setImmediate(() => setImmediate(() => void flush()));
  }

  return function run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue.push({ fn, resolve: resolve as (v: unknown) => void, reject, at: Date.now() });
      schedule();
    });
  };
}

function isUnavailable(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'BPLS_PG_UNAVAILABLE';
}

import type { Db } from './db.ts';
import {
  runWithSavepoints,
  runWithoutSavepoints,
  settle,
  type BatchItem,
  type Outcome,
} from './batch.ts';
import { BUSY_RETRY_DEADLINE_MS, isBusy, retryDelay, withoutBusyWait } from './busy.ts';

type Item = BatchItem;

/**
 * Group commit: write work that arrives within two turns of the event loop runs in one IMMEDIATE
 * transaction, one fsync for the lot (see schedule()). Every promise settles only after the commit, so an answer
 * never runs ahead of the disk, and a piece that throws leaves nothing behind.
 *
 * Pieces run without a savepoint each: a savepoint copies every page a piece touches into the
 * sub-journal, about a seventh of a grant's cost. Instead the connection's change counter
 * (`total_changes()`) is read before each piece; a piece that throws having changed nothing (every
 * refusal checks before it writes) is simply dropped. One that throws after writing (a bug, a full
 * disk) makes the whole batch roll back and run again with a savepoint per piece, the careful way,
 * so only that piece fails. `onRollback` hears of every rollback of a batch: whoever keeps state in
 * memory beside what the pieces wrote re-reads it then.
 *
 * Another process holding the write lock (a CLI import, a backup): BEGIN IMMEDIATE fails busy after
 * the connection's short busy timeout, nothing of the batch has run, and the queue waits on timers
 * (the event loop free, new pieces joining) and tries again; a piece that has waited
 * `busyDeadlineMs` is rejected with the busy error (answered `503 busy` with Retry-After). The fast
 * path pays nothing for this: one comparison per batch.
 */
export function createGroupCommit(
  db: Db,
  opts: { maxBatch?: number; onRollback?: () => void; busyDeadlineMs?: number } = {},
) {
  const maxBatch = opts.maxBatch ?? 512;
  const rolledBack = opts.onRollback ?? (() => {});
  const busyDeadlineMs = opts.busyDeadlineMs ?? BUSY_RETRY_DEADLINE_MS;
  // Prepared once: better-sqlite3's db.transaction() builds four wrappers per call, too dear per grant.
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT grouped_item');
  const release = db.prepare('RELEASE grouped_item');
  const rollbackTo = db.prepare('ROLLBACK TO grouped_item');
  const changes = db.prepare<[], number>('SELECT total_changes()').pluck();
  let queue: Item[] = [];
  let scheduled = false;
  /** Tries for the lock in the current busy episode (0: the lock was had last time). */
  let busyTries = 0;
  /**
   * During a busy episode, at each try: [queue length, Date.now()] pairs, flat. The first `length`
   * pieces of the queue were waiting at that time, so each piece is refused once it has waited
   * busyDeadlineMs, without stamping every piece (the fast path stays as it was).
   */
  let marks: number[] = [];
  /** A retry timer is set: it, not schedule(), runs the next flush. */
  let waiting = false;

  const runFast = (batch: Item[]) =>
    runWithoutSavepoints(batch, {
      written: () => changes.get()!,
      inTransaction: () => db.inTransaction,
      abort: () => {
        if (db.inTransaction) rollback.run();
        rolledBack();
      },
    });
  const runCareful = (batch: Item[]) =>
    runWithSavepoints(batch, {
      savepoint: () => savepoint.run(),
      release: () => release.run(),
      rollbackTo: () => rollbackTo.run(),
    });

  /** The batch's outcomes, or null when the lock is busy (BEGIN refused: nothing ran). */
  function execute(batch: Item[]): Outcome[] | null {
    try {
      if (busyTries === 0) begin.run();
      else withoutBusyWait(db, () => begin.run());
    } catch (err) {
      if (isBusy(err)) return null;
      throw err;
    }
    try {
      let results = runFast(batch);
      if (results === null) {
        begin.run();
        results = runCareful(batch);
      }
      commit.run();
      return results;
    } catch (err) {
      if (db.inTransaction) rollback.run();
      rolledBack();
      throw err;
    }
  }

  function flush(): void {
    scheduled = false;
    if (waiting || queue.length === 0) return;
    const batch = queue.length > maxBatch ? queue.splice(0, maxBatch) : queue;
    if (batch === queue) queue = [];
    let results: Outcome[] | null;
    try {
      results = execute(batch);
    } catch (err) {
      // The transaction itself failed (disk full, lock timeout): nothing of the batch is on disk.
      if (queue.length > 0) schedule();
      for (const item of batch) item.reject(err);
      return;
    }
    if (results === null) {
      queue = queue.length === 0 ? batch : batch.concat(queue);
      waitForLock();
      return;
    }
    if (busyTries !== 0) {
      busyTries = 0;
      marks = [];
    }
    if (queue.length > 0) schedule();
    settle(batch, results);
  }

  /**
   * Another process holds the lock: try again on a timer; the pieces that have waited
   * busyDeadlineMs by now are refused (the oldest first, as they queued).
   */
  function waitForLock(): void {
    const now = Date.now();
    busyTries++;
    marks.push(queue.length, now);
    let cut = 0;
    let drop = 0;
    for (let i = 0; i < marks.length && marks[i + 1]! <= now - busyDeadlineMs; i += 2) {
      cut = marks[i]!;
      drop = i + 2;
    }
    if (cut > 0) {
      const refused = queue.splice(0, cut);
      marks = marks.slice(drop);
      for (let i = 0; i < marks.length; i += 2) marks[i] = Math.max(0, marks[i]! - cut);
      const err = Object.assign(
        new Error(
          'database is locked (another process held the write lock past the wait deadline)',
        ),
        { code: 'SQLITE_BUSY' },
      );
      for (const item of refused) item.reject(err);
    }
    if (queue.length === 0) {
      busyTries = 0;
      marks = [];
      return;
    }
    waiting = true;
    setTimeout(() => {
      waiting = false;
      flush();
    }, retryDelay(busyTries));
  }

  function schedule(): void {
    if (scheduled || waiting) return;
    scheduled = true;
    // One more turn of the event loop before the commit: the requests whose bytes arrived while
    // this turn ran join the batch; two or more turns add latency and gain nothing (bench/README.md,
    // "Why the code is as it is": the group commit's extra turn).
    setImmediate(() => setImmediate(flush));
  }

  return function run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      schedule();
    });
  };
}

/** The pieces of a group commit and how they run: shared by SQLite's (group-commit.ts) and PostgreSQL's (pg/group-commit.ts). */

export interface BatchItem {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; value: unknown };

/**
 * Runs the pieces without a savepoint each: a piece that throws having written nothing (every
 * refusal checks before it writes) is only its own failure. One that throws after writing (by the
 * `written` counter), or that ended the transaction, has `abort()` called (it rolls the batch
 * back) and null returned: the caller runs the batch again with runWithSavepoints.
 */
export function runWithoutSavepoints(
  batch: readonly BatchItem[],
  o: { written: () => number; inTransaction: () => boolean; abort: () => void },
): Outcome[] | null {
  const results: Outcome[] = new Array(batch.length);
  let before = o.written();
  for (let i = 0; i < batch.length; i++) {
    try {
      results[i] = { ok: true, value: batch[i]!.fn() };
      before = o.written();
    } catch (err) {
      results[i] = { ok: false, value: err };
      if (!o.inTransaction() || o.written() !== before) {
        o.abort();
        return null;
      }
    }
  }
  return results;
}

/**
 * Runs each piece under a savepoint: a piece that throws leaves nothing behind. `release` must
 * wait for the database's answer, so a write of the piece that failed fails there, inside its try.
 */
export function runWithSavepoints(
  batch: readonly BatchItem[],
  o: { savepoint: () => void; release: () => void; rollbackTo: () => void },
): Outcome[] {
  const results: Outcome[] = new Array(batch.length);
  for (let i = 0; i < batch.length; i++) {
    o.savepoint();
    try {
      const value = batch[i]!.fn();
      o.release();
      results[i] = { ok: true, value };
    } catch (err) {
      o.rollbackTo();
      o.release();
      results[i] = { ok: false, value: err };
    }
  }
  return results;
}

/** Settles every piece's promise with its outcome. */
export function settle(batch: readonly BatchItem[], results: readonly Outcome[]): void {
  for (let i = 0; i < batch.length; i++) {
    const r = results[i]!;
    if (r.ok) batch[i]!.resolve(r.value);
    else batch[i]!.reject(r.value);
  }
}

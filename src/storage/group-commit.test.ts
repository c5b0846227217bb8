import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase, SERVER_BUSY_TIMEOUT_MS, type Db } from './db.ts';
import { createGroupCommit } from './group-commit.ts';
import { storageFailure } from './failures.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let db: Db;
let batch: ReturnType<typeof createGroupCommit>;
const rows = () => db.prepare('SELECT v FROM t ORDER BY v').pluck().all();
const insert = (v: string) => db.prepare('INSERT INTO t (v) VALUES (?)').run(v);

beforeEach(() => {
  dir = tempDir();
  db = openDatabase(join(dir, 'license.db'));
  db.exec('CREATE TABLE t (v TEXT NOT NULL UNIQUE)');
  batch = createGroupCommit(db);
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('group commit', () => {
  it('runs the pieces of one turn in one transaction and settles them after the commit', async () => {
    const seen: boolean[] = [];
    const all = ['a', 'b', 'c'].map((v) =>
      batch(() => {
        seen.push(db.inTransaction);
        insert(v);
        return v.toUpperCase();
      }),
    );
    // Nothing has run yet: the batch waits for the end of the turn.
    expect(rows()).toEqual([]);
    expect(await Promise.all(all)).toEqual(['A', 'B', 'C']);
    expect(seen).toEqual([true, true, true]);
    expect(db.inTransaction).toBe(false);
    // A second connection sees every row: they are committed, not just visible to this one.
    const other = new Database(join(dir, 'license.db'), { readonly: true });
    expect(other.prepare('SELECT count(*) FROM t').pluck().get()).toBe(3);
    other.close();
  });

  it('drops a piece that refuses before writing and keeps the others', async () => {
    const results = await Promise.allSettled([
      batch(() => insert('a')),
      batch(() => {
        throw new Error('refused');
      }),
      batch(() => insert('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('refused');
    expect(rows()).toEqual(['a', 'c']);
  });

  it('undoes a piece that fails after writing, and only that piece', async () => {
    let runs = 0;
    const results = await Promise.allSettled([
      batch(() => insert('a')),
      batch(() => {
        runs++;
        insert('half');
        insert('a'); // UNIQUE: fails after the first insert went in
      }),
      batch(() => insert('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    // The half-written piece left nothing; the batch ran again piece by piece, so it ran twice.
    expect(rows()).toEqual(['a', 'c']);
    expect(runs).toBe(2);
    expect(db.inTransaction).toBe(false);
  });

  it('rejects every piece when the transaction cannot start, and writes nothing', async () => {
    const locker = new Database(join(dir, 'license.db'), { timeout: 0 });
    db.pragma('busy_timeout = 0');
    locker.exec('BEGIN IMMEDIATE');
    const results = await Promise.allSettled([batch(() => insert('a')), batch(() => insert('b'))]);
    locker.exec('ROLLBACK');
    locker.close();
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/locked|busy/i);
    expect(rows()).toEqual([]);
    // The next batch works.
    await batch(() => insert('z'));
    expect(rows()).toEqual(['z']);
  });

  it('splits a long queue into batches of at most maxBatch pieces, each committed before the next', async () => {
    const small = createGroupCommit(db, { maxBatch: 2 });
    const other = new Database(join(dir, 'license.db'), { readonly: true });
    const committed: number[] = [];
    const pieces = Array.from({ length: 5 }, (_, i) =>
      small(() => {
        committed.push(other.prepare('SELECT count(*) FROM t').pluck().get() as number);
        insert(`v${i}`);
      }),
    );
    await Promise.all(pieces);
    other.close();
    expect(rows()).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    // What another connection saw when each piece ran: the batches before it, whole.
    expect(committed).toEqual([0, 0, 2, 2, 4]);
  });

  describe('another process holding the write lock', () => {
    /** Largest gap between ticks of a 5 ms interval while `work` runs: how long the event loop was held. */
    async function loopGap<T>(
      work: Promise<T>,
    ): Promise<{ value: PromiseSettledResult<T>; maxGapMs: number }> {
      let last = performance.now();
      let maxGapMs = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        maxGapMs = Math.max(maxGapMs, now - last);
        last = now;
      }, 5);
      const [value] = await Promise.allSettled([work]);
      await new Promise((r) => setTimeout(r, 10));
      clearInterval(tick);
      return { value, maxGapMs };
    }

    it('waits for it on timers, the event loop free, and commits once it is freed', async () => {
      db.pragma(`busy_timeout = ${SERVER_BUSY_TIMEOUT_MS}`);
      const locker = new Database(join(dir, 'license.db'));
      locker.exec('BEGIN IMMEDIATE');
      const release = setTimeout(() => locker.exec('COMMIT'), 600);
      const first = batch(() => insert('a'));
      // A piece arriving while the batch waits joins the queue and commits too.
      const later = new Promise((r) => setTimeout(r, 100)).then(() => batch(() => insert('b')));
      const { value, maxGapMs } = await loopGap(Promise.all([first, later]));
      clearTimeout(release);
      locker.close();
      expect(value.status).toBe('fulfilled');
      expect(rows()).toEqual(['a', 'b']);
      // A synchronous busy wait would have held the loop for the whole 600 ms.
      expect(maxGapMs).toBeLessThan(200);
    });

    it('past the deadline refuses every waiting piece with SQLITE_BUSY (answered busy 503), writes nothing; the next batch works', async () => {
      db.pragma(`busy_timeout = ${SERVER_BUSY_TIMEOUT_MS}`);
      const short = createGroupCommit(db, { busyDeadlineMs: 300 });
      const locker = new Database(join(dir, 'license.db'));
      locker.exec('BEGIN IMMEDIATE');
      const t0 = performance.now();
      const { value, maxGapMs } = await loopGap(
        Promise.allSettled([short(() => insert('a')), short(() => insert('b'))]),
      );
      const waited = performance.now() - t0;
      locker.exec('ROLLBACK');
      locker.close();
      const results = (value as PromiseFulfilledResult<PromiseSettledResult<unknown>[]>).value;
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      const reason = (results[0] as PromiseRejectedResult).reason as { code: string };
      expect(reason.code).toBe('SQLITE_BUSY');
      expect(storageFailure(reason)).toMatchObject({
        code: 'busy',
        status: 503,
        retryAfterSeconds: 1,
      });
      expect(waited).toBeGreaterThanOrEqual(300);
      expect(maxGapMs).toBeLessThan(200);
      expect(rows()).toEqual([]);
      expect(db.inTransaction).toBe(false);
      expect(await short(() => insert('z'))).toBeTruthy();
      expect(rows()).toEqual(['z']);
    });

    it('refuses each piece once it has waited the deadline, not sooner: a late piece waits its own full deadline', async () => {
      db.pragma(`busy_timeout = ${SERVER_BUSY_TIMEOUT_MS}`);
      const short = createGroupCommit(db, { busyDeadlineMs: 300 });
      const locker = new Database(join(dir, 'license.db'));
      locker.exec('BEGIN IMMEDIATE');
      const waited = (p: Promise<unknown>, t0: number) =>
        p.then(
          () => ({ ok: true, ms: performance.now() - t0 }),
          () => ({ ok: false, ms: performance.now() - t0 }),
        );
      const early = waited(
        short(() => insert('early')),
        performance.now(),
      );
      await new Promise((r) => setTimeout(r, 200));
      const late = waited(
        short(() => insert('late')),
        performance.now(),
      );
      const [a, b] = await Promise.all([early, late]);
      locker.exec('ROLLBACK');
      locker.close();
      expect(a).toMatchObject({ ok: false });
      expect(b).toMatchObject({ ok: false });
      expect(a.ms).toBeGreaterThanOrEqual(295);
      // Had the deadline counted from the first refusal, the late piece would be refused after ~100 ms.
      expect(b.ms).toBeGreaterThanOrEqual(295);
      expect(rows()).toEqual([]);
    });
  });
});

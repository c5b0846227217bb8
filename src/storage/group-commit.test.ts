import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from './db.ts';
import { createGroupCommit } from './group-commit.ts';
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
});

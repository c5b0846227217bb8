import { copyFileSync, existsSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir as makeTempDir } from '../../test/helpers.ts';
import { migrationNotes, openDatabase, type Db } from './db.ts';
import { checkDatabaseFile, integrityProblems } from './integrity.ts';

const open: Db[] = [];
const dirs: string[] = [];
const tempDir = () => {
  const d = makeTempDir();
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the start-up checks do not refuse a database a crash left with its WAL', () => {
  it('a copy taken with a WAL not yet checkpointed passes, opens with quick_check and has every row', () => {
    const dir = tempDir();
    const file = join(dir, 'license.db');
    const db = openDatabase(file);
    open.push(db);
    db.pragma('wal_autocheckpoint = 0');
    db.exec(
      "INSERT INTO server_state (key, value) VALUES ('server_id', 'srv_AAAAAAAAAAAAAAAAAAAAAA')",
    );
    const insert = db.prepare('INSERT INTO server_state (key, value) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 5000; i++) insert.run(`k${i}`, 'x'.repeat(200));
    })();
    // What a power cut leaves: the database file and a WAL holding the newest pages.
    const crashed = tempDir();
    copyFileSync(file, join(crashed, 'license.db'));
    copyFileSync(`${file}-wal`, join(crashed, 'license.db-wal'));
    expect(statSync(join(crashed, 'license.db-wal')).size).toBeGreaterThan(
      statSync(join(crashed, 'license.db')).size,
    );
    expect(() => checkDatabaseFile(join(crashed, 'license.db'))).not.toThrow();
    const recovered = openDatabase(join(crashed, 'license.db'), {
      mustExist: true,
      quickCheck: true,
    });
    open.push(recovered);
    expect(recovered.prepare('SELECT count(*) FROM server_state').pluck().get()).toBe(5001);
    expect(integrityProblems(recovered, 'integrity_check')).toEqual([]);
  });

  it('a WAL cut mid-frame is copied aside (0600) before SQLite drops its tail, and the opener is told; a whole one is not', () => {
    const dir = tempDir();
    const file = join(dir, 'license.db');
    const db = openDatabase(file);
    open.push(db);
    // The schema in the database file, the newest commit only in the WAL.
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.pragma('wal_autocheckpoint = 0');
    db.exec(
      "INSERT INTO server_state (key, value) VALUES ('server_id', 'srv_AAAAAAAAAAAAAAAAAAAAAA')",
    );
    const crashed = tempDir();
    copyFileSync(file, join(crashed, 'license.db'));
    copyFileSync(`${file}-wal`, join(crashed, 'license.db-wal'));
    // A whole WAL: nothing to say.
    expect(checkDatabaseFile(join(crashed, 'license.db'))).toEqual([]);
    truncateSync(join(crashed, 'license.db-wal'), 100);
    const notes = checkDatabaseFile(join(crashed, 'license.db'));
    expect(notes).toHaveLength(1);
    expect(notes[0]!.message).toMatch(/license\.db-wal ends in a partial frame \(100 bytes/);
    const copy = notes[0]!.details!.copy as string;
    expect(statSync(copy).size).toBe(100);
    expect(statSync(copy).mode & 0o777).toBe(0o600);
    // The opener hears of it (the server logs it, the CLI prints it).
    const reopened = openDatabase(join(crashed, 'license.db'), { mustExist: true });
    open.push(reopened);
    expect(migrationNotes(reopened).map((n) => n.migration)).toContain('startup');
  });

  it('a new database is made 0600 before SQLite writes to it, and its WAL and shm follow', () => {
    const dir = tempDir();
    const file = join(dir, 'license.db');
    const db = openDatabase(file);
    open.push(db);
    db.exec("INSERT INTO server_state (key, value) VALUES ('a', 'b')");
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      expect(existsSync(f), f).toBe(true);
      expect(statSync(f).mode & 0o777, f).toBe(0o600);
    }
  });
});

// One server per data directory. Node has no flock(), so the lock is SQLite's own: a small
// database `serve.lock` in the data directory, in which the holder keeps a write transaction open
// (`BEGIN IMMEDIATE`, SQLite's RESERVED lock, a POSIX fcntl lock). The kernel drops fcntl locks
// when the process dies, however it dies (kill -9, OOM killer, power cut), so a dead server never
// leaves the directory locked; a pid file alone would (pid reuse, containers). The file also
// records who holds it (pid, host, since), committed before the lock is taken, so a refusal can
// name the holder: a RESERVED lock still lets others read.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, openSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../errors.ts';

/** How long a read of the lock file waits out another process's commit (ms); the lock never waits. */
const READ_WAIT_MS = 2000;

/** The lock file's name in the data directory (documented in the README, data directory section). */
export const LOCK_FILE = 'serve.lock';

/** A held data-directory lock. `release()` is idempotent; process death releases it too. */
export interface DataDirLock {
  readonly file: string;
  /**
   * Lets go. `discard`: also remove the lock file when this lock created it (a serve refused at
   * start leaves the data directory as it found it). Removed while still held, so no other process
   * can have taken the lock on it.
   */
  release(opts?: { discard?: boolean }): void;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
  role: string;
}

export interface LockOptions {
  /** The better-sqlite3 addon object inside the single executable (loadSqliteBinding). */
  nativeBinding?: object | undefined;
  /** Who takes it: 'serve' or 'init'; shown to whoever is refused. */
  role: string;
  now?: () => number;
}

/**
 * Takes the data directory's lock, or throws `conflict` naming the process that holds it.
 * Only `serve` (for its whole life) and `init --force` (while it replaces the files) take it; other
 * CLI commands run beside a server on purpose and never look at it. The directory must exist.
 */
export function lockDataDir(dataDir: string, opts: LockOptions): DataDirLock {
  // A holder that discards its lock file (release({ discard })) may unlink it between our open and
  // our lock: we would then hold a lock on a file no longer in the directory, and a third process
  // could lock a new one. So the lock taken must still be on the file the directory names; if not,
  // try again on the new file (bounded: each retry needs another process to finish meanwhile).
  for (let attempt = 1; ; attempt++) {
    const lock = lockOnce(dataDir, opts, attempt === 5);
    if (lock === undefined) continue;
    if (lock.stillNamed() || attempt === 5) return lock;
    lock.release();
  }
}

/** One try; undefined when the file vanished between our check and SQLite's open (try again). */
function lockOnce(
  dataDir: string,
  opts: LockOptions,
  last: boolean,
): (DataDirLock & { stillNamed(): boolean }) | undefined {
  const file = join(dataDir, LOCK_FILE);
  // Created here with O_EXCL, so `fresh` is true only when this process made the file (an
  // existence check then an open would race with a holder that discards its file).
  let fresh = false;
  try {
    closeSync(openSync(file, 'wx', 0o600));
    fresh = true;
  } catch {
    // EEXIST: someone's lock file, used as it is; anything else: SQLite's open below says it.
  }
  // SQLite never makes the file itself: a file made by SQLite after another holder unlinked its
  // own would be taken for someone else's (not fresh) and left behind.
  // Reads wait briefly (another process commits its holder record under an EXCLUSIVE lock for a
  // moment); taking the lock itself never waits (tryBegin sets the timeout to 0 around it).
  const options: Database.Options = { timeout: READ_WAIT_MS, fileMustExist: true };
  if (opts.nativeBinding)
    (options as { nativeBinding?: unknown }).nativeBinding = opts.nativeBinding;
  let db: Database.Database;
  let ino: number | undefined;
  try {
    db = new Database(file, options);
    ino = inodeOf(file);
  } catch (err) {
    if (!last && inodeOf(file) === undefined) return undefined;
    throw new AppError(
      'forbidden',
      `cannot open the lock file ${file}: ${(err as Error).message}`,
      { data_dir: dataDir },
      'the data directory must be writable by the server',
    );
  }
  try {
    if (fresh) chmodSync(file, 0o600);
    // A rollback journal (not WAL: no -wal/-shm files beside it), and no fsync: the lock is the
    // fcntl lock, not the file's contents.
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = OFF');
    const holder: Holder = {
      pid: process.pid,
      host: hostname(),
      since: new Date((opts.now ?? Date.now)()).toISOString(),
      role: opts.role,
    };
    // First a short write transaction that records who we are: whoever gets it is alone in it.
    // Between its commit and the long one below another process may slip in; then one of the two
    // is refused at the second BEGIN and the record names the one that holds the lock.
    if (!tryBegin(db)) refuse(db, dataDir);
    try {
      // Ours to discard (the process refused cannot) when nobody held this file before (no holder
      // table: made in this race, by us or by a process refused before it wrote), or when the last
      // record is an init's: an init never keeps the lock file, so its record is from a race (two
      // inits, each writing its record, one refused at the long lock) or from an init killed
      // mid-way. A serve's record stays: the file is the directory's after a serve has run.
      const table = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'holder'").get();
      const last =
        table === undefined
          ? undefined
          : (db.prepare('SELECT role FROM holder LIMIT 1').get() as { role: string } | undefined);
      if (last === undefined || last.role === 'init') fresh = true;
      db.exec(
        'CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, host TEXT NOT NULL, since TEXT NOT NULL, role TEXT NOT NULL)',
      );
      db.exec('DELETE FROM holder');
      db.prepare('INSERT INTO holder (pid, host, since, role) VALUES (?, ?, ?, ?)').run(
        holder.pid,
        holder.host,
        holder.since,
        holder.role,
      );
      db.exec('COMMIT');
    } catch (err) {
      // A full disk cannot take the record (its journal needs space); the lock itself writes
      // nothing, so the server still starts, not ready, and recovers when space returns.
      if (!isStorageFailure(err)) throw err;
      if (db.inTransaction) db.exec('ROLLBACK');
    }
    if (!tryBegin(db)) refuse(db, dataDir);
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    db.close();
    throw explain(err, file, dataDir);
  }
  let held = true;
  return {
    file,
    stillNamed: () => ino !== undefined && inodeOf(file) === ino,
    release({ discard = false } = {}) {
      if (!held) return;
      held = false;
      if (discard && fresh) rmSync(file, { force: true });
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

/** The file's inode, or undefined when the name is gone. */
function inodeOf(file: string): number | undefined {
  try {
    return statSync(file).ino;
  } catch {
    return undefined;
  }
}

/** SQLite's errors on the lock file, as errors an admin can act on. */
function explain(err: unknown, file: string, dataDir: string): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message;
  if (code.startsWith('SQLITE_NOTADB') || code.startsWith('SQLITE_CORRUPT')) {
    return new AppError(
      'conflict',
      `${file} is not a lock file this server can use (${message})`,
      { data_dir: dataDir },
      `make sure no server runs on ${dataDir}, delete ${LOCK_FILE} and start again`,
    );
  }
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_PERM') ||
    code.startsWith('SQLITE_IOERR')
  ) {
    return new AppError(
      'forbidden',
      `cannot lock ${file}: ${message}`,
      { data_dir: dataDir },
      'the data directory and its lock file must be writable by the server, on a file system with POSIX locks',
    );
  }
  return err;
}

/** BEGIN IMMEDIATE without waiting: false when another process holds the RESERVED lock. */
function isStorageFailure(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR');
}

function tryBegin(db: Database.Database): boolean {
  db.pragma('busy_timeout = 0');
  try {
    db.exec('BEGIN IMMEDIATE');
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return false;
    throw err;
  } finally {
    db.pragma(`busy_timeout = ${READ_WAIT_MS}`);
  }
}

function refuse(db: Database.Database, dataDir: string): never {
  let holder: Holder | undefined;
  try {
    holder = db.prepare('SELECT pid, host, since, role FROM holder').get() as Holder | undefined;
  } catch {
    // The holder is between its two transactions, or made the file and has not written yet.
  }
  const who = holder
    ? `another process (pid ${holder.pid} on ${holder.host}, ${holder.role} since ${holder.since})`
    : 'another process';
  throw new AppError(
    'conflict',
    `${dataDir} is ${holder?.role === 'init' ? 'being initialised' : 'served'} by ${who}`,
    {
      data_dir: dataDir,
      ...(holder
        ? { pid: holder.pid, host: holder.host, since: holder.since, role: holder.role }
        : {}),
    },
    'one server per data directory: stop the other one first (other CLI commands may run beside it)',
  );
}

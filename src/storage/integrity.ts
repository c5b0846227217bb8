/**
 * Checks that a database file is a license server database and is not damaged: the file before
 * SQLite opens it, the schema after migrations, and SQLite's own quick_check / integrity_check.
 * docs/design.md "Process, files and resources": the server refuses to start rather than serve wrongly.
 */
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  openSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import Database from 'better-sqlite3';
import { AppError } from '../errors.ts';
import { assertRegularFile } from '../data-dir.ts';
import { MIGRATIONS, registerMigrationFunctions, type MigrationNote } from './migrations.ts';
import type { Db } from './db.ts';

const MAGIC = 'SQLite format 3\0';

/**
 * `serve` runs PRAGMA quick_check before it listens when license.db and its WAL together are at
 * most this size. Measured on the 2-core development machine: 45 MB (100,000 leases) takes
 * ~0.25 s; so 64 MiB keeps the first answer well under a second. A larger database is checked by
 * header and schema at start, and fully by `audit verify` / `backup` (integrity_check).
 */
export const QUICK_CHECK_MAX_BYTES = 64 << 20;

/** What to do when the database looks damaged: stop, and restore. */
export const RESTORE_DB_HINT =
  'stop the server and restore license.db from the latest good backup (bp-license-server backup); keep the damaged file for inspection; init --force would start a new, empty server';

/** The refusal for a damaged database file. `check` names the check that failed. */
export function damagedDatabase(
  file: string,
  check: string,
  message: string,
  details: Record<string, unknown> = {},
): AppError {
  return new AppError(
    'conflict',
    `${file} ${message}`,
    { file, check, ...details },
    RESTORE_DB_HINT,
  );
}

/**
 * Checks license.db before SQLite opens it, reading only its first 100 bytes: present, not empty
 * (an empty file would be taken as a new, empty database), an SQLite header, a page size and,
 * when no WAL is pending, a length that is whole pages and the length the header records.
 *
 * @throws AppError `conflict` with details.check = `missing` | `empty` | `header` | `truncated`
 */
export function checkDatabaseFile(file: string): MigrationNote[] {
  if (existsSync(file))
    assertRegularFile(file, undefined, (m) =>
      damagedDatabase(file, 'not_a_file', `${m.slice(file.length + 1)}; refusing to start`),
    );
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw damagedDatabase(
        file,
        'missing',
        'is missing; refusing to start (a new empty database is made only by init)',
      );
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) {
      throw damagedDatabase(
        file,
        'empty',
        'is empty (0 bytes): every entitlement, seat, lease and token of this server is in it, so it is not re-created; refusing to start',
      );
    }
    const head = Buffer.alloc(100);
    const n = readSync(fd, head, 0, 100, 0);
    if (n < 100 || head.toString('latin1', 0, 16) !== MAGIC) {
      throw damagedDatabase(
        file,
        'header',
        'is not an SQLite database (its header is wrong or cut short); refusing to start',
      );
    }
    const raw = head.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      throw damagedDatabase(
        file,
        'header',
        `has an invalid page size (${raw}) in its header; refusing to start`,
      );
    }
    // A WAL left by a crash may be part-way through a checkpoint, which writes pages (and the
    // header) into the file before it is whole again: the WAL recovery finishes it; no length check.
    if (hasWal(file)) return keepPartialWal(file, pageSize);
    if (size % pageSize !== 0) {
      throw damagedDatabase(
        file,
        'truncated',
        `is ${size} bytes, not a whole number of ${pageSize}-byte pages: it was cut short or overwritten; refusing to start`,
        { bytes: size, page_size: pageSize },
      );
    }
    // The header's page count is valid when its change counter matches "version-valid-for".
    const pages = head.readUInt32BE(28);
    const valid = head.readUInt32BE(24) === head.readUInt32BE(92);
    if (valid && pages > 0 && size < pages * pageSize) {
      throw damagedDatabase(
        file,
        'truncated',
        `is ${size} bytes but its header records ${pages} pages of ${pageSize} bytes: it was cut short; refusing to start`,
        { bytes: size, expected_bytes: pages * pageSize },
      );
    }
  } finally {
    closeSync(fd);
  }
  return [];
}

/**
 * A WAL whose length is not its 32-byte header plus whole frames ends in a partial frame: a write
 * cut by a power loss, or damage (a truncated copy). SQLite keeps the commits before it and drops
 * the rest when it opens the file, so a copy of the WAL is kept beside it (0600) before that, and
 * the admin is told (a note the server logs and the CLI prints).
 */
function keepPartialWal(file: string, pageSize: number): MigrationNote[] {
  const wal = `${file}-wal`;
  const size = statSync(wal).size;
  const frame = 24 + pageSize;
  if (size >= 32 && (size - 32) % frame === 0) return [];
  const copy = `${wal}.partial-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  let kept: string | null = copy;
  try {
    copyFileSync(wal, copy);
    chmodSync(copy, 0o600);
  } catch {
    // Best effort: a disk the WAL filled has no room for its copy, and the server must still start
    // (not ready) so that it recovers when space returns.
    rmSync(copy, { force: true });
    kept = null;
  }
  const where = kept
    ? `A copy was kept as ${kept}`
    : 'No copy could be kept (no room or no permission)';
  return [
    {
      migration: 'startup',
      message: `license.db-wal ends in a partial frame (${size} bytes: a write cut by a power loss or a full disk, or a damaged or truncated file); SQLite keeps the commits before it and drops the rest. ${where}; check the latest changes (audit log) and restore from a backup if some are missing`,
      details: { wal_bytes: size, frame_bytes: frame, copy: kept },
    },
  ];
}

function hasWal(file: string): boolean {
  try {
    return statSync(`${file}-wal`).size > 0;
  } catch {
    return false;
  }
}

/** Bytes of the database and its WAL: what quick_check will read. */
export function databaseBytes(file: string): number {
  let n = 0;
  for (const f of [file, `${file}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {
      // no WAL
    }
  }
  return n;
}

/**
 * Runs SQLite's `quick_check` (page structure, record formats, constraints; O(N)) or
 * `integrity_check` (also every index against its table; O(N log N)). Returns the problems found,
 * at most `maxErrors`; an empty list means "ok". A page so damaged that SQLite refuses to read it
 * is reported as a problem, not thrown.
 */
export function integrityProblems(
  db: Db,
  kind: 'quick_check' | 'integrity_check',
  maxErrors = 20,
): string[] {
  try {
    const rows = db.pragma(`${kind}(${maxErrors})`) as Array<Record<string, string>>;
    const lines = rows.map((r) => Object.values(r)[0] ?? '');
    if (lines.length === 1 && lines[0] === 'ok') return [];
    // One problem a line; SQLite prefixes the first with "*** in database main ***" and a newline.
    return lines
      .flatMap((l) => l.split('\n'))
      .map((l) => l.trim())
      .filter((l) => l !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(l));
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB'))
      return [(err as Error).message];
    throw err;
  }
}

/** Is this a SQLite error that means the file is damaged (not busy, not read-only)? */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
  );
}

let expected: Map<string, string> | undefined;

/** Tables (with their columns) and indexes the migrations make, read from a migrated in-memory database. */
function expectedSchema(nativeBinding: object | undefined): Map<string, string> {
  if (expected) return expected;
  const options: Database.Options = {};
  if (nativeBinding) (options as { nativeBinding?: unknown }).nativeBinding = nativeBinding;
  const mem = new Database(':memory:', options);
  try {
    mem.pragma('foreign_keys = ON');
    registerMigrationFunctions(mem);
    for (const m of MIGRATIONS) {
      mem.exec(m.sql);
      m.after?.(mem, { now: () => 0 });
    }
    expected = schemaOf(mem);
  } finally {
    mem.close();
  }
  return expected;
}

function schemaOf(db: Db): Map<string, string> {
  const out = new Map<string, string>();
  const objects = db
    .prepare(
      "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'",
    )
    .all() as Array<{ type: string; name: string }>;
  for (const o of objects) {
    const cols =
      o.type === 'table'
        ? (
            db
              .prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid')
              .pluck()
              .all(o.name) as string[]
          ).join(',')
        : '';
    out.set(`${o.type} ${o.name}`, cols);
  }
  return out;
}

/**
 * Checks that a migrated database holds every table (with its columns) and index the migrations
 * make. Costs a few milliseconds (one in-memory migration per process, then sqlite_master).
 *
 * @throws AppError `conflict` with details.check = `schema`
 */
export function checkSchema(db: Db, file: string, nativeBinding: object | undefined): void {
  const want = expectedSchema(nativeBinding);
  const have = schemaOf(db);
  const wrong: string[] = [];
  for (const [name, cols] of want) {
    const got = have.get(name);
    if (got === undefined) wrong.push(`${name} is missing`);
    else if (got !== cols) wrong.push(`${name} has columns (${got}), expected (${cols})`);
  }
  if (wrong.length > 0) {
    throw damagedDatabase(
      file,
      'schema',
      `does not have the license server's schema (${wrong.slice(0, 5).join('; ')}${wrong.length > 5 ? '; …' : ''}); refusing to start`,
      { problems: wrong },
    );
  }
}

/** Opens a database file on its own (a backup just written) and returns its quick_check problems. */
export function checkDatabaseCopy(file: string, nativeBinding: object | undefined): string[] {
  const options: Database.Options = { fileMustExist: true };
  if (nativeBinding) (options as { nativeBinding?: unknown }).nativeBinding = nativeBinding;
  let db: Db;
  try {
    db = new Database(file, options);
  } catch (err) {
    if (isCorruption(err)) return [(err as Error).message];
    throw err;
  }
  try {
    return integrityProblems(db, 'quick_check');
  } finally {
    db.close();
  }
}

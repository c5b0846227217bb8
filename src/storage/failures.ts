import { AppError } from '../errors.ts';

/**
 * What an error from SQLite or the file system means to a client, when the environment caused it:
 * another process holds the lock (`busy`, 503), the disk is full (`storage_full`, 507), the file
 * system is read-only or failing (`storage_unavailable`, 503). Undefined for anything else (a bug,
 * answered `internal`). Storage errors are never the client's fault and never a 500.
 *
 * SQLite's extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_WRITE, …) start with the primary one.
 */
export function storageFailure(err: unknown): AppError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (code === '53100') {
    return new AppError(
      'storage_full',
      "the disk holding PostgreSQL's data is full; nothing was changed",
      { retry_after_seconds: 30 },
    );
  }
  const pg = postgresFailure(code);
  if (pg) return pg;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new AppError(
      'busy',
      'the database is busy (another process holds its write lock); try again shortly',
      { retry_after_seconds: 1 },
    );
  }
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') {
    return new AppError(
      'storage_full',
      'the disk holding the data directory is full; nothing was changed',
      { retry_after_seconds: 30 },
    );
  }
  if (
    code.startsWith('SQLITE_READONLY') ||
    code === 'EROFS' ||
    code.startsWith('SQLITE_IOERR') ||
    code === 'SQLITE_CANTOPEN' ||
    code === 'EIO'
  ) {
    return new AppError(
      'storage_unavailable',
      'the database cannot be written just now (read-only file system, permissions or an I/O error); nothing was changed',
      { retry_after_seconds: 30 },
    );
  }
  return undefined;
}

/**
 * The same for PostgreSQL (storage/pg/): unreachable (our BPLS_PG_UNAVAILABLE: refused, lost,
 * timed out; SQLSTATE classes 08 and 57P: connection failures, shutdowns) and too many connections
 * are `storage_unavailable`, and so is a read-only database (25006: a standby); another process's lock past its timeout, a deadlock or a
 * serialization failure are `busy`; disk full (53100) is `storage_full`.
 */
function postgresFailure(code: string): AppError | undefined {
  if (
    code === 'BPLS_PG_UNAVAILABLE' ||
    code.startsWith('08') ||
    code.startsWith('57P') ||
    code === '53300'
  ) {
    return new AppError(
      'storage_unavailable',
      'the PostgreSQL server cannot be reached just now; nothing was changed',
      { retry_after_seconds: 2 },
    );
  }
  if (code === '28P01' || code === '28000') {
    return new AppError(
      'storage_unavailable',
      'PostgreSQL refused the login: check the user and password (in the URL, or PGPASSWORD) and pg_hba.conf; nothing was changed',
      { retry_after_seconds: 30 },
    );
  }
  if (code === '3D000') {
    return new AppError(
      'storage_unavailable',
      'the database named by --database (BPLS_DATABASE_URL) does not exist on that PostgreSQL server; nothing was changed',
      { retry_after_seconds: 30 },
    );
  }
  // Out of resources, an I/O error, a statement cancelled by an administrator or a server-side
  // timeout: the database's state, not the request's.
  if (code === '57014' || code.startsWith('53') || code.startsWith('58')) {
    return new AppError(
      'storage_unavailable',
      "the PostgreSQL database cannot serve this just now (out of resources, an I/O error, or the statement was cancelled; PostgreSQL's log has the detail); nothing was changed",
      { retry_after_seconds: 30 },
    );
  }
  // A prepared plan made before another node changed the schema: the next try prepares again.
  if (code === '0A000') {
    return new AppError('busy', 'the database schema changed under this request; try again', {
      retry_after_seconds: 1,
    });
  }
  if (code === '25006') {
    return new AppError(
      'storage_unavailable',
      'the PostgreSQL database refuses writes (a read-only standby, or a read-only session); nothing was changed',
      { retry_after_seconds: 30 },
    );
  }
  if (code === '55P03' || code === '40P01' || code === '40001') {
    return new AppError(
      'busy',
      'the database is busy (another server process holds its write lock); try again shortly',
      { retry_after_seconds: 1 },
    );
  }
  return undefined;
}

// What each storage error means to a client. The codes SQLite really gives were seen on real file
// systems (test/e2e/storage-full.test.ts: SQLITE_FULL on a full tmpfs, SQLITE_IOERR_WRITE on an
// ext4 turned read-only under the server, a refusal to start on a read-only mount); two of them are
// made here for real too.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { openDatabase } from './db.ts';
import { storageFailure } from './failures.ts';
import { tempDir } from '../../test/helpers.ts';

const codeOf = (code: string) => storageFailure(Object.assign(new Error(code), { code }));

describe('storageFailure', () => {
  it('maps a full disk to storage_full 507 with Retry-After', () => {
    for (const code of ['SQLITE_FULL', 'ENOSPC', 'EDQUOT']) {
      const e = codeOf(code);
      expect(e?.code, code).toBe('storage_full');
      expect(e?.status).toBe(507);
      expect(e?.retryAfterSeconds).toBe(30);
    }
  });

  it('maps read-only, permission and I/O failures to storage_unavailable 503', () => {
    for (const code of [
      'SQLITE_READONLY',
      'SQLITE_READONLY_DBMOVED',
      'SQLITE_IOERR',
      'SQLITE_IOERR_WRITE',
      'SQLITE_IOERR_FSYNC',
      'SQLITE_IOERR_SHMSIZE',
      'SQLITE_CANTOPEN',
      'EROFS',
      'EIO',
    ]) {
      const e = codeOf(code);
      expect(e?.code, code).toBe('storage_unavailable');
      expect(e?.status).toBe(503);
      expect(e?.retryAfterSeconds).toBe(30);
    }
  });

  it('maps a lock to busy, and leaves bugs and bad data alone', () => {
    for (const code of ['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_LOCKED'])
      expect(codeOf(code)?.code, code).toBe('busy');
    for (const code of ['SQLITE_CORRUPT', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_ERROR', 'ENOENT'])
      expect(codeOf(code), code).toBeUndefined();
    expect(storageFailure(new TypeError('x is undefined'))).toBeUndefined();
    expect(storageFailure(undefined)).toBeUndefined();
  });

  it('recognises what SQLite itself throws for a refused write', () => {
    const dir = tempDir();
    const db = openDatabase(join(dir, 'license.db'));
    try {
      db.pragma('query_only = ON');
      let thrown: unknown;
      try {
        db.prepare("INSERT INTO server_state (key, value) VALUES ('k', 'v')").run();
      } catch (err) {
        thrown = err;
      }
      expect((thrown as { code?: string }).code).toBe('SQLITE_READONLY');
      expect(storageFailure(thrown)?.code).toBe('storage_unavailable');
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

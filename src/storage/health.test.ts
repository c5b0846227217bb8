// Storage episodes on a real database: what starts one (and what does not), one line each way,
// and a probe that is a real commit. The failures here are SQLite's error shapes; the real full
// disk and read-only file system are in test/e2e/storage-full.test.ts.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase, type Db } from './db.ts';
import { createStorageHealth, type StorageHealth } from './health.ts';
import { createLogger } from '../log.ts';
import { AppError } from '../errors.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let db: Db;
let health: StorageHealth;
let lines: Array<Record<string, unknown>>;
let now: number;
const sqliteError = (code: string, message: string) => Object.assign(new Error(message), { code });
const probeRow = () =>
  db.prepare("SELECT value FROM server_state WHERE key = 'storage_probe'").pluck().get();

beforeEach(() => {
  lines = [];
  now = 1_700_000_000_000;
  dir = tempDir();
  db = openDatabase(join(dir, 'license.db'));
  const log = createLogger({
    write: (t) =>
      lines.push(
        ...t
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      ),
  });
  // A long timer interval: the probes here are the ones check() makes.
  health = createStorageHealth({ db, dir, log, now: () => now, probeIntervalMs: 60_000 });
});
afterEach(() => {
  health.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('storage episodes', () => {
  it('a full disk starts one episode, logged once; a committing probe ends it, logged once', () => {
    expect(health.check()).toBe('ok');
    expect(health.failed(sqliteError('SQLITE_FULL', 'database or disk is full'))?.code).toBe(
      'storage_full',
    );
    for (let i = 0; i < 50; i++)
      health.failed(sqliteError('SQLITE_FULL', 'database or disk is full'));
    expect(health.condition()).toBe('storage_full');
    expect(health.failedWrites()).toBe(51);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        code: 'storage_full',
        cause: 'SQLITE_FULL',
        error: 'database or disk is full',
      }),
    ]);
    expect(probeRow()).toBeUndefined();

    // Asked within 250 ms of the start: no probe yet.
    expect(health.check()).toBe('storage_full');
    expect(probeRow()).toBeUndefined();
    now += 1500;
    expect(health.check()).toBe('ok');
    // The probe committed a row: a write that reached the disk, not one rolled back.
    expect(probeRow()).toBe(String(now));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({
      level: 'info',
      msg: 'storage writable again',
      code: 'storage_full',
      seconds: 1.5,
      refused_writes: 51,
    });
    expect(db.inTransaction).toBe(false);
  });

  it('read-only and I/O errors are storage_unavailable; busy, bugs and client errors start nothing', () => {
    expect(health.failed(sqliteError('SQLITE_BUSY', 'database is locked'))).toBeUndefined();
    expect(health.failed(new TypeError('x is undefined'))).toBeUndefined();
    expect(health.failed(new AppError('invalid_request', 'bad'))).toBeUndefined();
    expect(health.failed(new AppError('busy', 'locked'))).toBeUndefined();
    expect(health.condition()).toBe('ok');
    expect(lines).toEqual([]);

    expect(
      health.failed(sqliteError('SQLITE_READONLY', 'attempt to write a readonly database'))?.code,
    ).toBe('storage_unavailable');
    expect(health.condition()).toBe('storage_unavailable');
    // Already mapped by a service: counts the same.
    expect(health.failed(new AppError('storage_unavailable', 'cannot write'))).toBeDefined();
    // A full disk seen later is the more precise diagnosis.
    // An I/O error with room on the disk stays storage_unavailable (the e2e test fills a disk).
    expect(health.failed(sqliteError('SQLITE_IOERR_WRITE', 'disk I/O error'))?.code).toBe(
      'storage_unavailable',
    );
    expect(health.failed(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBeDefined();
    expect(health.condition()).toBe('storage_full');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'warn',
      code: 'storage_unavailable',
      cause: 'SQLITE_READONLY',
    });
  });

  it("the probe never waits on another process's lock: busy is inconclusive, the episode goes on", () => {
    health.failed(sqliteError('SQLITE_IOERR', 'disk I/O error'));
    const other = new Database(join(dir, 'license.db'));
    try {
      other.exec('BEGIN IMMEDIATE');
      now += 1500;
      const t0 = performance.now();
      expect(health.check()).toBe('storage_unavailable');
      // busy_timeout is 5 s on the serving connection; the probe sets it to 0 for itself.
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
      expect(db.inTransaction).toBe(false);
      other.exec('ROLLBACK');
    } finally {
      other.close();
    }
    now += 1500;
    expect(health.check()).toBe('ok');
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringContaining('storage not writable'),
      'storage writable again',
    ]);
  });

  it('checkSpace() starts an episode only when the disk is nearly full', () => {
    health.checkSpace();
    expect(health.condition()).toBe('ok');
    expect(lines).toEqual([]);
  });
});

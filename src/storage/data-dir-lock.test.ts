import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { LOCK_FILE, lockDataDir } from './data-dir-lock.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'bpls-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the data directory lock', () => {
  it('is held by one at a time; the refusal names the holder; release lets the next in', () => {
    const first = lockDataDir(dir, { role: 'serve', now: () => Date.UTC(2026, 10, 22) });
    expect(first.file).toBe(path.join(dir, LOCK_FILE));
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    let refused: unknown;
    try {
      lockDataDir(dir, { role: 'serve' });
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(AppError);
    const e = refused as AppError;
    expect(e.code).toBe('conflict');
    expect(e.message).toMatch(
      new RegExp(
        `^${dir} is served by another process \\(pid ${process.pid} on .+, serve since 2026-11-22T00:00:00\\.000Z\\)$`,
      ),
    );
    expect(e.details).toMatchObject({
      data_dir: dir,
      pid: process.pid,
      role: 'serve',
      since: '2026-11-22T00:00:00.000Z',
    });
    expect(e.hint).toMatch(/one server per data directory/);
    first.release();
    first.release(); // idempotent
    const second = lockDataDir(dir, { role: 'init' });
    expect(() => lockDataDir(dir, { role: 'serve' })).toThrow(
      /is being initialised by another process \(pid \d+ .*init since/,
    );
    second.release();
  });

  it('a directory it cannot write to is a clear error', () => {
    expect(() => lockDataDir(path.join(dir, 'missing'), { role: 'serve' })).toThrow(
      /cannot open the lock file/,
    );
  });

  it('a lock file that is not SQLite is a clear error saying what to do, and is left alone', () => {
    writeFileSync(path.join(dir, LOCK_FILE), 'junk '.repeat(200));
    let refused: unknown;
    try {
      lockDataDir(dir, { role: 'serve' });
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe('conflict');
    expect((refused as AppError).message).toMatch(
      /serve\.lock is not a lock file this server can use/,
    );
    expect((refused as AppError).hint).toMatch(/delete serve\.lock/);
    expect(readFileSync(path.join(dir, LOCK_FILE), 'utf8')).toBe('junk '.repeat(200));
  });
});

// Store.tx and Store.txAsync against a write lock held by another connection (as another process
// would): a short synchronous wait then busy, or a wait on timers up to a deadline.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { CLI_BUSY_TIMEOUT_MS, SERVER_BUSY_TIMEOUT_MS } from './db.ts';
import { openStore, type Store } from './store.ts';
import { storageFailure } from './failures.ts';
import { tempDir } from '../../test/helpers.ts';

let dir: string;
let store: Store;
let locker: Database.Database;
const file = () => join(dir, 'license.db');
const keys = () =>
  store.db
    .prepare("SELECT key FROM server_state WHERE key LIKE 'busy-test-%' ORDER BY key")
    .pluck()
    .all();

beforeEach(() => {
  dir = tempDir();
  store = openStore(file(), { busyTimeoutMs: SERVER_BUSY_TIMEOUT_MS });
  locker = new Database(file());
});
afterEach(() => {
  if (locker.inTransaction) locker.exec('ROLLBACK');
  locker.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the serving connection and a lock held elsewhere', () => {
  it('has the short busy timeout after open (migrations ran with the long one)', () => {
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(SERVER_BUSY_TIMEOUT_MS);
    const cli = openStore(file());
    try {
      expect(cli.db.pragma('busy_timeout', { simple: true })).toBe(CLI_BUSY_TIMEOUT_MS);
    } finally {
      cli.close();
    }
  });

  it('tx() gives up after the short timeout with SQLITE_BUSY (answered busy 503), not after 5 s; nothing written', () => {
    locker.exec('BEGIN IMMEDIATE');
    const t0 = performance.now();
    let err: unknown;
    try {
      store.tx(() => store.state.set('busy-test-a', '1'));
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - t0;
    expect((err as { code?: string }).code).toBe('SQLITE_BUSY');
    expect(storageFailure(err)).toMatchObject({ code: 'busy', status: 503 });
    expect(ms).toBeLessThan(1000);
    locker.exec('ROLLBACK');
    expect(keys()).toEqual([]);
  });

  it('reads go on while another connection writes (WAL)', () => {
    locker.exec('BEGIN IMMEDIATE');
    locker.exec("INSERT INTO server_state (key, value) VALUES ('busy-test-locker', 'x')");
    expect(store.state.get('schema') ?? 'read fine').toBeTruthy();
    expect(keys()).toEqual([]);
    locker.exec('COMMIT');
    expect(keys()).toEqual(['busy-test-locker']);
  });

  it('txAsync() waits on timers and commits once the lock is freed', async () => {
    locker.exec('BEGIN IMMEDIATE');
    setTimeout(() => locker.exec('COMMIT'), 300);
    let ticks = 0;
    const tick = setInterval(() => ticks++, 10);
    const r = await store.txAsync(() => {
      store.state.set('busy-test-b', '1');
      return 'done';
    });
    clearInterval(tick);
    expect(r).toBe('done');
    expect(keys()).toEqual(['busy-test-b']);
    // The event loop ran meanwhile (a synchronous wait would leave ~0 ticks).
    expect(ticks).toBeGreaterThan(5);
  });

  it('txAsync() past its deadline throws SQLITE_BUSY and writes nothing; restores the busy timeout', async () => {
    locker.exec('BEGIN IMMEDIATE');
    const err = await store
      .txAsync(() => store.state.set('busy-test-c', '1'), { deadlineMs: 200 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((err as { code?: string }).code).toBe('SQLITE_BUSY');
    expect(storageFailure(err)).toMatchObject({ code: 'busy', status: 503 });
    locker.exec('ROLLBACK');
    expect(keys()).toEqual([]);
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(SERVER_BUSY_TIMEOUT_MS);
  });

  it('txAsync({ lazySync }) commits with synchronous=NORMAL and puts FULL back', async () => {
    expect(store.db.pragma('synchronous', { simple: true })).toBe(2);
    let inside: unknown;
    await store.txAsync(
      () => {
        inside = store.db.pragma('synchronous', { simple: true });
        store.state.set('busy-test-d', '1');
      },
      { lazySync: true },
    );
    expect(inside).toBe(1);
    expect(store.db.pragma('synchronous', { simple: true })).toBe(2);
    expect(keys()).toEqual(['busy-test-d']);
  });
});

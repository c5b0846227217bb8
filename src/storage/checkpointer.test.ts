// The checkpoint thread from the sources (Node runs checkpoint-worker.ts itself): the serving
// connection never checkpoints, the WAL stays bounded under steady writes, and it is cut to zero
// at start and when asked. test/e2e/binary.test.ts runs it inside the single executable.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { existsSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { openDatabase, type Db } from './db.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import { createLogger } from '../log.ts';
import { tempDir } from '../../test/helpers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let dir: string;
let file: string;
let db: Db;
let cp: Checkpointer | undefined;
let lines: Array<Record<string, unknown>>;
const log = createLogger({
  level: 'debug',
  write: (t) =>
    lines.push(
      ...t
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    ),
});
const walSize = () => (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!fn()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

beforeEach(() => {
  lines = [];
  dir = tempDir();
  file = join(dir, 'license.db');
  db = openDatabase(file);
  db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)');
});
afterEach(async () => {
  await cp?.close();
  cp = undefined;
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the checkpoint thread', () => {
  it(
    'takes checkpoints off the serving connection and keeps the WAL bounded under steady writes',
    { timeout: 60_000 },
    async () => {
      cp = startCheckpointer({
        db,
        file,
        addonFile: undefined,
        log,
        intervalMs: 20,
        restartBytes: 256 << 10,
      });
      expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
      expect(db.pragma('journal_size_limit', { simple: true })).toBe(16 << 20);
      // At start the worker cuts the WAL to zero.
      await until('the start truncation', () => cp!.stats().truncates >= 1);
      expect(lines.some((l) => l.msg === 'WAL truncated')).toBe(true);

      // ~12 MB written in 120 commits, a turn of the event loop apart (as the server commits).
      const insert = db.prepare('INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)');
      const many = db.transaction((base: number) => {
        for (let i = 0; i < 200; i++) insert.run(base + i, randomBytes(500));
      });
      let maxWal = 0;
      for (let n = 0; n < 120; n++) {
        many(n * 200);
        maxWal = Math.max(maxWal, walSize());
        await sleep(5);
      }
      expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(24_000);
      const st = cp.stats();
      expect(st.running).toBe(true);
      // The WAL was started again from its beginning, many times: without that it would hold all ~12 MB.
      expect(st.serving).toBeGreaterThan(3);
      expect(maxWal).toBeLessThan(6 << 20);
      expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    },
  );

  it('copies and cuts the WAL to zero when asked, and stops cleanly', async () => {
    cp = startCheckpointer({ db, file, addonFile: undefined, log, intervalMs: 10_000 });
    await until('the start truncation', () => cp!.stats().truncates >= 1);
    db.transaction(() => {
      for (let i = 0; i < 2000; i++)
        db.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(i, randomBytes(200));
    })();
    expect(walSize()).toBeGreaterThan(100_000);
    cp.truncate();
    await until('the WAL cut', () => walSize() === 0);
    expect(cp.walBytes()).toBe(0);
    // The rows are in the database file itself now.
    expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(2000);
    await cp.close();
    expect(cp.stats().running).toBe(false);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });
});

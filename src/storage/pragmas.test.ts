// Durability as the server really opens its database: the default chain (no flag, no
// BPLS_DURABILITY) through resolveGlobal and startServer gives a WAL database committing with
// synchronous=FULL, so an answered write survives a power cut; BPLS_DURABILITY=normal gives
// synchronous=NORMAL (still WAL), which may lose the last commits on power loss but never
// corrupts the file. The bench's SQLite ceiling measures the same pragmas.
import { rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveGlobal } from '../config.ts';
import { createIdentity, dataPaths } from '../data-dir.ts';
import { silentLogger } from '../log.ts';
import { startServer, type RunningServer } from '../server.ts';
import { openStore, type AnyStore } from './store.ts';

const sqliteDb = (s: AnyStore) => {
  if (s.kind !== 'sqlite') throw new Error('an SQLite store was expected');
  return s.db;
};
import { tempDir } from '../../test/helpers.ts';

/** PRAGMA synchronous answers a number: https://sqlite.org/pragma.html#pragma_synchronous */
const SYNCHRONOUS = { OFF: 0, NORMAL: 1, FULL: 2, EXTRA: 3 } as const;

const dirs: string[] = [];
const servers: RunningServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A data directory as `init` leaves it: identity files and a migrated database. */
function dataDir(): string {
  const dir = tempDir('bpls-pragmas-');
  dirs.push(dir);
  createIdentity(dir, Date.parse('2024-01-15T10:30:00Z'));
  openStore(dataPaths(dir).db).close();
  return dir;
}

/** startServer with the durability the CLI resolves from `env` (no --flags), on 127.0.0.1:0. */
async function serveWith(env: Record<string, string>): Promise<RunningServer> {
  const dir = dataDir();
  const g = resolveGlobal({ dataDir: dir, nativeCacheDir: dir }, env, dir);
  const s = await startServer({ ...g, host: '127.0.0.1', port: 0 }, silentLogger);
  servers.push(s);
  return s;
}

function pragmas(db: Database.Database): { journal: unknown; synchronous: unknown } {
  return {
    journal: db.pragma('journal_mode', { simple: true }),
    synchronous: db.pragma('synchronous', { simple: true }),
  };
}

describe('the serving connection', () => {
  it('by default (no BPLS_DURABILITY): journal_mode=WAL and synchronous=FULL', async () => {
    expect(resolveGlobal({}, {}, '/').durability).toBe('full');
    const s = await serveWith({});
    expect(pragmas(sqliteDb(s.ctx.store))).toEqual({
      journal: 'wal',
      synchronous: SYNCHRONOUS.FULL,
    });
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    // WAL is recorded in the file, so every other process that opens it (the CLI beside a running
    // server) shares it; synchronous is per connection, hence read on the server's own above.
    const other = new Database(dataPaths(s.ctx.dataDir).db, { readonly: true });
    try {
      expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      other.close();
    }
  });

  it('with BPLS_DURABILITY=normal: still WAL, synchronous=NORMAL', async () => {
    const s = await serveWith({ BPLS_DURABILITY: 'normal' });
    expect(pragmas(sqliteDb(s.ctx.store))).toEqual({
      journal: 'wal',
      synchronous: SYNCHRONOUS.NORMAL,
    });
  });

  it('refuses any other BPLS_DURABILITY before opening anything', () => {
    expect(() => resolveGlobal({}, { BPLS_DURABILITY: 'off' }, '/')).toThrow(
      /BPLS_DURABILITY must be full or normal/,
    );
  });
});

describe('openStore (the CLI commands and tools)', () => {
  it('defaults to WAL and synchronous=FULL; durability "normal" gives NORMAL', () => {
    const dir = dataDir();
    const full = openStore(dataPaths(dir).db);
    try {
      expect(pragmas(full.db)).toEqual({ journal: 'wal', synchronous: SYNCHRONOUS.FULL });
    } finally {
      full.close();
    }
    const normal = openStore(dataPaths(dir).db, { durability: 'normal' });
    try {
      expect(pragmas(normal.db)).toEqual({ journal: 'wal', synchronous: SYNCHRONOUS.NORMAL });
    } finally {
      normal.close();
    }
  });
});

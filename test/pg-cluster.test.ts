// The PostgreSQL test wiring: the run's cluster (global setup) hands out databases of their own
// (test/pg.ts), and a cluster of scripts/pg-cluster.mjs keeps its data over a restart and a crash.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, findPgBin, startCluster, type PgCluster } from '../scripts/pg-cluster.mjs';
import { freshPgUrl, PG_ADMIN_URL_ENV } from './pg.ts';
import { tempDir } from './helpers.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const databases = (url: string) =>
  query<{ datname: string }>(url, 'SELECT datname FROM pg_database ORDER BY datname');

describe('freshPgUrl', () => {
  it('gives an empty database of its own that takes a table', async () => {
    const url = await freshPgUrl('Cluster Test/one');
    const name = new URL(url).pathname.slice(1);
    expect(name).toMatch(/^t_cluster_test_one_\d+_\d+$/);
    expect(new URL(url).host).toBe(new URL(process.env[PG_ADMIN_URL_ENV]!).host);
    expect(await query(url, 'SELECT current_database() AS db')).toEqual([{ db: name }]);
    expect(await query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).toEqual(
      [],
    );
    await query(url, 'CREATE TABLE t (x BIGINT NOT NULL)');
    await query(url, 'INSERT INTO t VALUES (7)');
    expect(await query(url, 'SELECT x FROM t')).toEqual([{ x: '7' }]);
  });

  it('gives a different database on every call', async () => {
    const a = await freshPgUrl('same');
    const b = await freshPgUrl('same');
    expect(a).not.toBe(b);
    await query(a, 'CREATE TABLE only_in_a (x INTEGER)');
    expect(await query(b, "SELECT to_regclass('only_in_a') AS t")).toEqual([{ t: null }]);
    const names = (await databases(a)).map((r) => r.datname);
    expect(names).toEqual(
      expect.arrayContaining([new URL(a).pathname.slice(1), new URL(b).pathname.slice(1)]),
    );
  });

  it('refuses a database name that would need quoting, and creates nothing', async () => {
    const admin = process.env[PG_ADMIN_URL_ENV]!;
    const before = await databases(admin);
    for (const name of ['', 'Upper', 'a-b', 'x; DROP DATABASE postgres', 'a'.repeat(64)]) {
      await expect(createDatabase(admin, name)).rejects.toThrow(/must be 1-63 characters/);
    }
    expect(await databases(admin)).toEqual(before);
  });
});

describe('startCluster', () => {
  let cluster: PgCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('finds the newest server binaries', () => {
    const bin = findPgBin();
    expect(bin).toMatch(/^\/usr\/lib\/postgresql\/\d+\/bin$/);
    expect(existsSync(join(bin, 'initdb'))).toBe(true);
  });

  it('names the Debian package when there is no PostgreSQL', () => {
    const empty = tempDir();
    try {
      expect(() => findPgBin(empty)).toThrow(
        `PostgreSQL server binaries not found (no ${empty}/<version>/bin with initdb and pg_ctl): install the Debian package postgresql`,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('keeps committed data over a restart and over a crash, and removes its dir when stopped', async () => {
    cluster = await startCluster();
    const { url, port, dir } = cluster;
    expect(url).toBe(`postgres://bpls@127.0.0.1:${port}/postgres`);
    const settings = await query<{ name: string; setting: string }>(
      url,
      `SELECT name, setting FROM pg_settings WHERE name IN
         ('listen_addresses', 'fsync', 'synchronous_commit', 'max_connections', 'server_encoding', 'lc_collate')
       ORDER BY name`,
    );
    expect(Object.fromEntries(settings.map((s) => [s.name, s.setting]))).toEqual({
      fsync: 'on',
      lc_collate: 'C',
      listen_addresses: '127.0.0.1',
      max_connections: '200',
      server_encoding: 'UTF8',
      synchronous_commit: 'on',
    });
    const db = await createDatabase(url, 'kept');
    await query(db, 'CREATE TABLE t (x TEXT NOT NULL)');
    await query(db, "INSERT INTO t VALUES ('before restart')");

    await cluster.restart();
    expect(await query(db, 'SELECT x FROM t')).toEqual([{ x: 'before restart' }]);

    await query(db, "INSERT INTO t VALUES ('before crash')");
    await cluster.kill();
    await expect(query(db, 'SELECT 1')).rejects.toThrow();
    await cluster.restart();
    expect(await query(db, 'SELECT x FROM t ORDER BY x')).toEqual([
      { x: 'before crash' },
      { x: 'before restart' },
    ]);

    await cluster.stop();
    cluster = undefined;
    expect(existsSync(dir)).toBe(false);
    await expect(query(url, 'SELECT 1')).rejects.toThrow();
  });
});

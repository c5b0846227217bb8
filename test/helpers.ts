/** Test harness: a real data directory in a temp folder, the real migrations, the app via app.request(). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../src/clock.ts';
import { createIdentity, dataPaths } from '../src/data-dir.ts';
import { openStore, type AnyStore } from '../src/storage/store.ts';
import { openPgStore } from '../src/storage/pg/store.ts';
import { openPg } from '../src/storage/pg/driver.ts';
import { PG_ADMIN_URL_ENV } from './pg.ts';
import { createServices } from '../src/context.ts';
import { createApp } from '../src/app.ts';
import { silentLogger } from '../src/log.ts';

export const SEED_NOW = '2024-01-15T10:30:00Z';

export function tempDir(prefix = 'bpls-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * The store the harness runs on: SQLite, or PostgreSQL when BPLS_TEST_STORE=postgres (the
 * `postgres` vitest project runs the store-dependent test files so, on the run's test cluster).
 */
export const TEST_STORE: 'sqlite' | 'postgres' =
  process.env.BPLS_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

let pgMade = 0;
let pgTemplate: string | undefined;
let pgAdmin: ReturnType<typeof openPg> | undefined;

const pgUrlOf = (admin: string, name: string) => {
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return u.toString();
};

/**
 * A fresh database on the test cluster, made synchronously (the harness is synchronous): a copy of
 * this worker's template, migrated once by the real migrations, so each costs a copy, not the
 * schema's DDL.
 */
export function freshPgUrlSync(): string {
  const admin = process.env[PG_ADMIN_URL_ENV];
  if (!admin)
    throw new Error(`${PG_ADMIN_URL_ENV} is not set (test/global-setup.ts starts the cluster)`);
  // One connection thread for this worker's CREATE DATABASEs (a thread per call costs ~0.1 s).
  pgAdmin ??= openPg(admin);
  if (pgTemplate === undefined) {
    const tpl = `tpl_${process.pid}`;
    pgAdmin.exec(`CREATE DATABASE ${tpl}`, { raw: true });
    openPgStore(pgUrlOf(admin, tpl), { dataDir: tmpdir() }).close();
    pgTemplate = tpl;
  }
  const name = `h_${process.pid}_${++pgMade}`;
  pgAdmin.exec(`CREATE DATABASE ${name} TEMPLATE ${pgTemplate}`, { raw: true });
  return pgUrlOf(admin, name);
}

/** The harness's store: SQLite in the data directory, or a fresh PostgreSQL database (TEST_STORE). */
function openTestStore(dir: string, now: () => number, url?: string): AnyStore {
  if (TEST_STORE === 'postgres') return openPgStore(url ?? freshPgUrlSync(), { dataDir: dir });
  return openStore(dataPaths(dir).db, { now });
}

/** Every row of every table of a store, for "nothing changed" (the same on both stores). */
export function storeRows(store: AnyStore): Record<string, unknown[]> {
  const db = store.db;
  const out: Record<string, unknown[]> = {};
  if (store.kind === 'postgres') {
    const tables = db
      .prepare(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name NOT IN ('schema_migrations', 'state_version') ORDER BY table_name",
      )
      .all() as { name: string }[];
    for (const t of tables) out[t.name] = db.prepare(`SELECT * FROM ${t.name} ORDER BY 1`).all();
    return out;
  }
  const tables = db
    .prepare(
      "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .all() as { name: string; wr: number }[];
  // A WITHOUT ROWID table has no rowid; it reads out in primary-key order.
  for (const t of tables)
    out[t.name] = db.prepare(`SELECT * FROM ${t.name}${t.wr ? '' : ' ORDER BY rowid'}`).all();
  return out;
}

export type Harness = ReturnType<typeof createHarness>;

export function createHarness(opts: { now?: string; before?: (dbFile: string) => void } = {}) {
  const dir = tempDir();
  const clock = new ManualClock(opts.now ?? SEED_NOW);
  const { info, key } = createIdentity(dir, clock.now());
  // `before` may leave a database as an older release did: opening it migrates it, dated by our clock.
  opts.before?.(dataPaths(dir).db);
  if (opts.before && TEST_STORE === 'postgres')
    throw new Error('createHarness({ before }) leaves an SQLite file: an SQLite-only test');
  const store = openTestStore(dir, () => clock.now());
  const pgUrl = store.kind === 'postgres' ? store.pg.url : undefined;
  const services = createServices(store, clock, key, info);
  const admin = services.apiTokens.create({ name: 'test admin', role: 'admin' }, 'test').token;
  const reader = services.apiTokens.create({ name: 'test reader', role: 'reader' }, 'test').token;
  const app = createApp({ services, store, clock, info, log: silentLogger });

  async function req(
    method: string,
    path: string,
    body?: unknown,
    token: string | null = admin,
    headers: Record<string, string> = {},
  ) {
    const h: Record<string, string> = { ...headers };
    if (token !== null) h.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      h['content-type'] ??= 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await app.request(path, {
      method,
      headers: h,
      ...(payload !== undefined ? { body: payload } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, body: json, text, headers: res.headers };
  }

  /** Every row of every table: "nothing changed" is this staying equal. */
  function snapshot() {
    const out = storeRows(store);
    // Using a token stamps last_used_at: bookkeeping, not a change the request made.
    for (const row of (out.api_tokens ?? []) as Array<Record<string, unknown>>)
      delete row.last_used_at;
    return out;
  }

  return {
    dir,
    clock,
    store,
    services,
    info,
    key,
    app,
    admin,
    reader,
    req,
    snapshot,
    /** A second connection to the same database, as another process has: the caller closes it. */
    openOtherStore: () => openTestStore(dir, () => clock.now(), pgUrl),
    close() {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const seedEntitlement = {
  tenant_id: 'customer-tenant-id',
  product_id: 'your-product-id',
  policy_json: { type: 'concurrent', max_seats: 10, features: ['feature-a', 'feature-b'] },
  starts_at: '2024-01-01T00:00:00Z',
  ends_at: '2024-12-31T23:59:59Z',
};

/**
 * Makes the database refuse inserting the row `id` into `table` with `message` (a failure staged
 * inside a transaction, as a failing disk would); returns the undo. Either store.
 */
export function failInsertOf(
  store: AnyStore,
  table: string,
  id: string,
  message: string,
): () => void {
  if (store.kind === 'sqlite') {
    store.db.exec(
      `CREATE TEMP TRIGGER boom BEFORE INSERT ON main.${table} WHEN NEW.id = '${id}' BEGIN SELECT RAISE(ABORT, '${message}'); END`,
    );
    return () => store.db.exec('DROP TRIGGER temp.boom');
  }
  store.pg.exec(
    `CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${message}'; END $$;
     CREATE TRIGGER boom BEFORE INSERT ON ${table} FOR EACH ROW WHEN (NEW.id = '${id}') EXECUTE FUNCTION boom()`,
    { raw: true },
  );
  return () => store.pg.exec(`DROP TRIGGER boom ON ${table}; DROP FUNCTION boom()`, { raw: true });
}

/** Drops the named triggers of `table` (the append-only guards, for tamper tests). Either store. */
export function dropTriggers(store: AnyStore, table: string, names: string[]): void {
  for (const n of names) {
    if (store.kind === 'sqlite') store.db.exec(`DROP TRIGGER IF EXISTS ${n}`);
    else store.pg.exec(`DROP TRIGGER IF EXISTS ${n} ON ${table}`, { raw: true });
  }
}

/** Commits on this connection stop waiting for the disk (SQLite synchronous=NORMAL; PostgreSQL synchronous_commit off). */
export function commitWithoutFsync(store: AnyStore): void {
  if (store.kind === 'sqlite') store.db.pragma('synchronous = NORMAL');
  else store.pg.exec('SET synchronous_commit = off', { raw: true });
}

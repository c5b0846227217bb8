/** Test harness: a real data directory in a temp folder, the real migrations, the app via app.request(). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../src/clock.ts';
import { createIdentity, dataPaths } from '../src/data-dir.ts';
import { openStore } from '../src/storage/store.ts';
import { createServices } from '../src/context.ts';
import { createApp } from '../src/app.ts';
import { silentLogger } from '../src/log.ts';

export const SEED_NOW = '2024-01-15T10:30:00Z';

export function tempDir(prefix = 'bpls-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export type Harness = ReturnType<typeof createHarness>;

export function createHarness(opts: { now?: string; before?: (dbFile: string) => void } = {}) {
  const dir = tempDir();
  const clock = new ManualClock(opts.now ?? SEED_NOW);
  const { info, key } = createIdentity(dir, clock.now());
  // `before` may leave a database as an older release did: opening it migrates it, dated by our clock.
  opts.before?.(dataPaths(dir).db);
  const store = openStore(dataPaths(dir).db, { now: () => clock.now() });
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
    const db = store.db;
    const tables = db
      .prepare(
        "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'",
      )
      .all() as { name: string; wr: number }[];
    const out: Record<string, unknown> = {};
    // A WITHOUT ROWID table has no rowid; it reads out in primary-key order.
    for (const t of tables)
      out[t.name] = db.prepare(`SELECT * FROM ${t.name}${t.wr ? '' : ' ORDER BY rowid'}`).all();
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

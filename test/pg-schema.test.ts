// src/storage/pg/schema.sql against the SQLite schema the real migrations make: the same tables,
// columns (order, type by the mapping, NOT NULL, default), keys, foreign keys, indexes (partial
// ones with their predicate) and triggers, and the same SQL answering the same way on both
// (constraints refusing, defaults filling, seqs counting, the triggers' effects).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import schemaSql from '../src/storage/pg/schema.sql';
import { openDatabase, type Db } from '../src/storage/db.ts';
import { freshPgUrl } from './pg.ts';
import { tempDir } from './helpers.ts';

/** Tables only one side has, and why. */
const ONLY_IN_PG = {
  // SQLite keeps its schema version in PRAGMA user_version; PostgreSQL has no such slot.
  // state_version: PgStore.dataVersion(), what SQLite's PRAGMA data_version answers there.
  tables: ['schema_migrations', 'state_version'],
  // SQLite has no TRUNCATE; PostgreSQL's would bypass the row triggers of the append-only tables.
  // The state_version bumps have no SQLite counterpart (see above).
  triggers: [
    'audit_log_no_truncate',
    'sync_revocations_no_truncate',
    'server_state_version',
    'clock_events_version',
  ],
};

/** SQLite's declared types, as schema.sql maps them. */
const TYPE_MAP: Record<string, string> = {
  INTEGER: 'bigint',
  TEXT: 'text',
  BLOB: 'bytea',
  REAL: 'double precision',
};

interface Column {
  name: string;
  type: string;
  notNull: boolean;
  default: string | null;
  /** SQLite: the rowid alias (`seq INTEGER PRIMARY KEY`); PostgreSQL: an identity column. */
  rowSeq: boolean;
}

interface Index {
  table: string;
  unique: boolean;
  columns: string[];
  /** The partial index's WHERE, without parentheses, casts and spaces. */
  where: string | null;
}

let dir: string;
let lite: Db;
let client: pg.Client;

beforeAll(async () => {
  dir = tempDir();
  lite = openDatabase(join(dir, 'license.db'));
  lite.defaultSafeIntegers(true);
  client = new pg.Client({
    connectionString: await freshPgUrl('schema'),
    // BIGINT as bigint, as the SQLite side reads with safe integers: rows compare exactly.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === pg.types.builtins.INT8
          ? (v: string) => BigInt(v)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  await client.connect();
  await client.query(schemaSql);
});

afterAll(async () => {
  await client?.end();
  lite?.close();
  rmSync(dir, { recursive: true, force: true });
});

const liteAll = <T>(sql: string, ...params: unknown[]) => lite.prepare(sql).all(...params) as T[];
const pgAll = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
  (await client.query<T>(sql, params)).rows;

const squash = (where: string | null) =>
  where === null ? null : where.replace(/::[a-z ]+|[()\s]/g, '').toLowerCase();

function liteTables(): string[] {
  return liteAll<{ name: string }>(
    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).map((r) => r.name);
}

function liteColumns(table: string): Column[] {
  const cols = liteAll<{
    name: string;
    type: string;
    notnull: bigint;
    dflt_value: string | null;
    pk: bigint;
  }>('SELECT * FROM pragma_table_info(?) ORDER BY cid', table);
  const { wr } = lite.prepare('SELECT wr FROM pragma_table_list WHERE name = ?').get(table) as {
    wr: bigint;
  };
  const pkCount = cols.filter((c) => c.pk > 0n).length;
  return cols.map((c) => ({
    name: c.name,
    type: TYPE_MAP[c.type] ?? `unmapped ${c.type}`,
    // A STRICT table's primary key refuses NULL (checked below), declared NOT NULL or not.
    notNull: c.notnull === 1n || c.pk > 0n,
    default: c.dflt_value,
    rowSeq: c.pk === 1n && pkCount === 1 && c.type === 'INTEGER' && wr === 0n,
  }));
}

async function pgColumns(table: string): Promise<Column[]> {
  const rows = await pgAll<{
    column_name: string;
    data_type: string;
    is_nullable: string;
    column_default: string | null;
    is_identity: string;
  }>(
    `SELECT column_name, data_type, is_nullable, column_default, is_identity
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1
      ORDER BY ordinal_position`,
    [table],
  );
  return rows.map((c) => ({
    name: c.column_name,
    type: c.data_type,
    notNull: c.is_nullable === 'NO',
    default: c.column_default === null ? null : c.column_default.replace(/::[a-z ]+$/, ''),
    rowSeq: c.is_identity === 'YES',
  }));
}

/** Keys: `pk table(cols)` and `unique table(cols)`, from the table definitions (not CREATE INDEX). */
function liteKeys(): string[] {
  const keys: string[] = [];
  for (const t of liteTables()) {
    const pk = liteColumns(t).length
      ? liteAll<{ name: string; pk: bigint }>(
          'SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk',
          t,
        ).map((c) => c.name)
      : [];
    if (pk.length) keys.push(`pk ${t}(${pk.join(',')})`);
    for (const ix of liteAll<{ name: string; origin: string }>(
      "SELECT name, origin FROM pragma_index_list(?) WHERE origin = 'u'",
      t,
    )) {
      const cols = liteAll<{ name: string }>(
        'SELECT name FROM pragma_index_info(?) ORDER BY seqno',
        ix.name,
      ).map((c) => c.name);
      keys.push(`unique ${t}(${cols.join(',')})`);
    }
  }
  return keys.sort();
}

async function pgKeys(): Promise<string[]> {
  const rows = await pgAll<{ kind: string; tbl: string; cols: string }>(
    `SELECT CASE c.contype WHEN 'p' THEN 'pk' ELSE 'unique' END AS kind, t.relname AS tbl,
            (SELECT string_agg(a.attname, ',' ORDER BY k.n)
               FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
       JOIN pg_namespace ns ON ns.oid = t.relnamespace
      WHERE ns.nspname = 'public' AND c.contype IN ('p', 'u')`,
  );
  return rows.map((r) => `${r.kind} ${r.tbl}(${r.cols})`).sort();
}

function liteForeignKeys(): string[] {
  return liteTables()
    .flatMap((t) =>
      liteAll<{ from: string; table: string; to: string; on_update: string; on_delete: string }>(
        'SELECT * FROM pragma_foreign_key_list(?)',
        t,
      ).map((f) => `${t}(${f.from}) -> ${f.table}(${f.to}) ${f.on_update}/${f.on_delete}`),
    )
    .sort();
}

async function pgForeignKeys(): Promise<string[]> {
  const actions: Record<string, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE' };
  const rows = await pgAll<{
    src: string;
    col: string;
    dst: string;
    ref: string;
    upd: string;
    del: string;
  }>(
    `SELECT s.relname AS src, a.attname AS col, d.relname AS dst, b.attname AS ref,
            c.confupdtype AS upd, c.confdeltype AS del
       FROM pg_constraint c
       JOIN pg_class s ON s.oid = c.conrelid JOIN pg_class d ON d.oid = c.confrelid
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
       JOIN pg_attribute b ON b.attrelid = c.confrelid AND b.attnum = c.confkey[1]
      WHERE c.contype = 'f' AND cardinality(c.conkey) = 1`,
  );
  return rows
    .map((r) => `${r.src}(${r.col}) -> ${r.dst}(${r.ref}) ${actions[r.upd]}/${actions[r.del]}`)
    .sort();
}

/** The indexes made by CREATE INDEX (not those behind a key), by name. */
function liteIndexes(): Record<string, Index> {
  const out: Record<string, Index> = {};
  for (const t of liteTables()) {
    for (const ix of liteAll<{ name: string; unique: bigint; partial: bigint }>(
      'SELECT name, "unique", partial FROM pragma_index_list(?) WHERE origin = \'c\'',
      t,
    )) {
      const { sql } = lite.prepare('SELECT sql FROM sqlite_schema WHERE name = ?').get(ix.name) as {
        sql: string;
      };
      out[ix.name] = {
        table: t,
        unique: ix.unique === 1n,
        columns: liteAll<{ name: string }>(
          'SELECT name FROM pragma_index_info(?) ORDER BY seqno',
          ix.name,
        ).map((c) => c.name),
        where: squash(ix.partial === 1n ? sql.replace(/^[\s\S]*\bWHERE\b/, '') : null),
      };
    }
  }
  return out;
}

async function pgIndexes(): Promise<Record<string, Index>> {
  const rows = await pgAll<{
    name: string;
    tbl: string;
    uniq: boolean;
    cols: string[];
    pred: string | null;
  }>(
    `SELECT i.relname AS name, t.relname AS tbl, x.indisunique AS uniq,
            array(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS cols,
            pg_get_expr(x.indpred, x.indrelid) AS pred
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_namespace ns ON ns.oid = t.relnamespace
      WHERE ns.nspname = 'public'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`,
  );
  return Object.fromEntries(
    rows.map((r) => [
      r.name,
      { table: r.tbl, unique: r.uniq, columns: r.cols, where: squash(r.pred) },
    ]),
  );
}

describe('schema.sql against the migrated SQLite schema', () => {
  it('has the same tables, less the accepted ones', async () => {
    const pgTables = (
      await pgAll<{ tablename: string }>(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
      )
    ).map((r) => r.tablename);
    expect(pgTables.filter((t) => !ONLY_IN_PG.tables.includes(t))).toEqual(liteTables());
    expect(liteTables()).toHaveLength(17);
  });

  it('has the same columns in each table: order, mapped type, NOT NULL, default, seq', async () => {
    for (const t of liteTables()) {
      expect({ table: t, columns: await pgColumns(t) }).toEqual({
        table: t,
        columns: liteColumns(t),
      });
    }
  });

  it('compares every text column bytewise (collation C), as SQLite does', async () => {
    const rows = await pgAll<{
      table_name: string;
      column_name: string;
      collation_name: string | null;
    }>(
      `SELECT table_name, column_name, collation_name FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type = 'text'`,
    );
    expect(rows.length).toBeGreaterThan(50);
    expect(rows.filter((r) => r.collation_name !== 'C')).toEqual([]);
  });

  it('has the same primary keys, unique keys and foreign keys', async () => {
    const keys = await pgKeys();
    expect(keys.filter((k) => !k.includes(' schema_migrations('))).toEqual(liteKeys());
    expect(await pgForeignKeys()).toEqual(liteForeignKeys());
    expect(liteForeignKeys()).toHaveLength(4);
  });

  it('has the same indexes by name, with their columns, uniqueness and partial predicate', async () => {
    const want = liteIndexes();
    expect(Object.keys(want)).toHaveLength(11);
    expect(Object.values(want).filter((i) => i.where !== null)).toHaveLength(4);
    expect(await pgIndexes()).toEqual(want);
  });

  it('has the same triggers, plus the accepted ones', async () => {
    const liteTriggers = liteAll<{ name: string }>(
      "SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name",
    ).map((r) => r.name);
    const pgTriggers = (
      await pgAll<{ tgname: string }>(
        'SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname',
      )
    ).map((r) => r.tgname);
    expect(pgTriggers.filter((t) => !ONLY_IN_PG.triggers.includes(t))).toEqual(liteTriggers);
    expect(pgTriggers).toEqual(expect.arrayContaining(ONLY_IN_PG.triggers));
  });
});

/**
 * One SQL text, run on both (`?` placeholders become `$1…` for PostgreSQL); its outcome: 'ok' or
 * the refusal both engines give (matched loosely).
 */
type Step = [sql: string, outcome: 'ok' | RegExp, params?: unknown[]];

const numbered = (sql: string) => {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
};

const CHECK = /check constraint/i;
const UNIQUE = /unique constraint/i;
const FOREIGN = /foreign key constraint/i;
const NOT_NULL = /not[- ]null constraint/i;

const ENT_COLS =
  'id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, created_at, updated_at';
const ent = (id: string, over: Partial<Record<'type' | 'status' | 'ends', string>> = {}) =>
  `INSERT INTO entitlements (${ENT_COLS}) VALUES ('${id}', 't', 'p', '{}', '${over.type ?? 'concurrent'}', 5, 0, 1000, ${over.ends ?? '2000'}, '${over.status ?? 'active'}', 'manual', 1, 1)`;
const LEASE_COLS =
  'id, entitlement_id, subject_type, subject_id, features, granted_at, renewed_at, expires_at, state';

const STEPS: Step[] = [
  [ent('ent_a'), 'ok'],
  [ent('ent_b', { ends: '900' }), CHECK],
  [ent('ent_b', { type: 'per_galaxy' }), CHECK],
  [ent('ent_b', { status: 'paused' }), CHECK],
  [ent('ent_a'), UNIQUE],
  [ent('ent_b'), 'ok'],
  [
    `INSERT INTO entitlements (${ENT_COLS}, seq) VALUES ('ent_x', 't', 'p', '{}', 'concurrent', 5, 0, 1, NULL, 'active', 'manual', 1, 1, 99)`,
    NOT_NULL,
  ],
  // Leases: the defaults fill the columns later migrations added; the entitlement must exist.
  [
    `INSERT INTO leases (${LEASE_COLS}) VALUES ('lease_1', 'ent_a', 'user', 'Alice', '[]', 1, 1, 5, 'active')`,
    'ok',
  ],
  [
    `INSERT INTO leases (${LEASE_COLS}) VALUES ('lease_2', 'ent_zz', 'user', 'bob', '[]', 1, 1, 5, 'active')`,
    FOREIGN,
  ],
  [
    `INSERT INTO leases (${LEASE_COLS}) VALUES ('lease_2', 'ent_a', 'user', 'bob', '[]', 1, 1, 5, 'lent')`,
    CHECK,
  ],
  [
    `INSERT INTO leases (${LEASE_COLS}, subject_key, borrowed) VALUES ('lease_2', 'ent_b', 'user', 'bob', '[]', 2, 2, 9, 'active', 'bob', 1)`,
    'ok',
  ],
  [
    `INSERT INTO leases (${LEASE_COLS}) VALUES ('lease_1', 'ent_b', 'user', 'x', '[]', 1, 1, 5, 'active')`,
    UNIQUE,
  ],
  // Seats: unique by subject key per entitlement and subject type.
  [
    `INSERT INTO seats (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by) VALUES ('seat_1', 'ent_a', 'user', 'Alice', 'alice', 1, 'auto')`,
    'ok',
  ],
  [
    `INSERT INTO seats (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by) VALUES ('seat_2', 'ent_a', 'user', 'ALICE', 'alice', 2, 'auto')`,
    UNIQUE,
  ],
  [
    `INSERT INTO seats (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by) VALUES ('seat_2', 'ent_a', 'machine', 'ALICE', 'alice', 2, 'admin')`,
    'ok',
  ],
  // Counters: the upsert the grant uses (qualified: PostgreSQL refuses the bare column there).
  [
    `INSERT INTO entitlement_counters (entitlement_id, active_leases) VALUES ('ent_a', 1) ON CONFLICT (entitlement_id) DO UPDATE SET active_leases = entitlement_counters.active_leases + excluded.active_leases`,
    'ok',
  ],
  [
    `INSERT INTO entitlement_counters (entitlement_id, active_leases) VALUES ('ent_a', 1) ON CONFLICT (entitlement_id) DO UPDATE SET active_leases = entitlement_counters.active_leases + excluded.active_leases`,
    'ok',
  ],
  [`INSERT INTO entitlement_counters (entitlement_id) VALUES ('ent_zz')`, FOREIGN],
  // Installations: an idempotency key is unique per entitlement; NULL keys never collide.
  [
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, created_at, updated_at) VALUES ('inst_1', 'ent_a', 'dashboards', 'a', '{}', 1, 1)`,
    'ok',
  ],
  [
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, created_at, updated_at) VALUES ('inst_2', 'ent_a', 'dashboards', 'b', '{}', 1, 1)`,
    'ok',
  ],
  [
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, idempotency_key, created_at, updated_at) VALUES ('inst_3', 'ent_a', 'dashboards', 'c', '{}', 'k1', 1, 1)`,
    'ok',
  ],
  [
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, idempotency_key, created_at, updated_at) VALUES ('inst_4', 'ent_a', 'dashboards', 'd', '{}', 'k1', 2, 2)`,
    UNIQUE,
  ],
  [
    `INSERT INTO installations (id, entitlement_id, quota, name, metadata, idempotency_key, created_at, updated_at) VALUES ('inst_4', 'ent_b', 'dashboards', 'd', '{}', 'k1', 2, 2)`,
    'ok',
  ],
  [
    `INSERT INTO installation_events (at, entitlement_id, quota, delta) VALUES (1, 'ent_a', 'dashboards', 1)`,
    'ok',
  ],
  [
    `INSERT INTO installation_events (at, entitlement_id, quota, delta) VALUES (2, 'ent_a', 'dashboards', -1)`,
    'ok',
  ],
  [
    `INSERT INTO installation_events (at, entitlement_id, quota, delta) VALUES (3, 'ent_a', 'dashboards', 2)`,
    CHECK,
  ],
  [`INSERT INTO lease_events (at, kind, entitlement_id) VALUES (1, 'grant', 'ent_a')`, 'ok'],
  [
    `INSERT INTO lease_events (at, kind, entitlement_id, flags) VALUES (2, 'renew', 'ent_a', 3)`,
    'ok',
  ],
  [`INSERT INTO lease_events (at, kind) VALUES (3, 'borrow')`, CHECK],
  [`INSERT INTO clock_events (at, kind, hwm, details) VALUES (1, 'suspect', 1, '{}')`, 'ok'],
  [`INSERT INTO clock_events (at, kind, hwm, details) VALUES (1, 'late', 1, '{}')`, CHECK],
  // The append-only tables: inserts with the writer's seq; never an update or a delete.
  [
    `INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash) VALUES (1, 1, 'a', 'x', '{}', '', 'h1')`,
    'ok',
  ],
  [
    `INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash) VALUES (2, 2, 'a', 'y', '{}', 'h1', 'h2')`,
    'ok',
  ],
  [`UPDATE audit_log SET actor = 'mallory' WHERE seq = 1`, /^audit_log is append-only$/],
  [`DELETE FROM audit_log WHERE seq = 2`, /^audit_log is append-only$/],
  [`DELETE FROM audit_log WHERE seq = 99`, 'ok'],
  [`INSERT INTO sync_revocations (entitlement_id, seq, revoked_at) VALUES ('ent_b', 1, 1)`, 'ok'],
  [
    `UPDATE sync_revocations SET seq = 2`,
    /^sync_revocations is append-only: revocations are permanent$/,
  ],
  [`DELETE FROM sync_revocations`, /^sync_revocations is append-only: revocations are permanent$/],
  [
    `INSERT INTO sync_imports (seq, manifest_sha256, iss, kid, iat, exp, records, imported_at, actor) VALUES (7, 'm', 'v', 'k', 1, 2, 0, 1, 'cli')`,
    'ok',
  ],
  [
    `INSERT INTO sync_exports (seq, manifest_sha256, created_at, period_start, audit_seq, audit_hash, event_seq, clock_seq, records) VALUES (3, 'm', 1, 0, 2, 'h2', 2, 1, 0)`,
    'ok',
  ],
  [
    `INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_at) VALUES ('tok_1', 'n', 'admin', ?, 'bp_', 1)`,
    'ok',
    [Buffer.from([0, 255])],
  ],
  [
    `INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_at) VALUES ('tok_2', 'n', 'admin', ?, 'bp_', 1)`,
    UNIQUE,
    [Buffer.from([0, 255])],
  ],
  [
    `INSERT INTO server_state (key, value) VALUES ('k', 'v') ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    'ok',
  ],
  [
    `INSERT INTO server_state (key, value) VALUES ('k', 'w') ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    'ok',
  ],
  [
    `INSERT INTO lease_instances (lease_id, instance_id, expires_at) VALUES ('lease_1', 'i1', 5)`,
    'ok',
  ],
  [
    `INSERT INTO lease_instances (lease_id, instance_id, expires_at) VALUES ('lease_1', 'i1', 6)`,
    UNIQUE,
  ],
  [
    `INSERT INTO lease_instances (lease_id, instance_id, expires_at) VALUES ('lease_1', NULL, 6)`,
    NOT_NULL,
  ],
];

async function outcome(run: () => unknown): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

/** The tables whose writer always gives the seq (the identity is never drawn on). */
const EXPLICIT_SEQ = ['audit_log', 'sync_imports', 'sync_exports'];

const TABLE_ORDER: Record<string, string> = {
  entitlement_counters: 'entitlement_id',
  lease_instances: 'lease_id, instance_id',
  seats: 'id',
  server_state: 'key',
  sync_revocations: 'entitlement_id',
  api_tokens: 'id',
  seats_merged: 'id',
  entitlement_epoch: 'value',
};

describe('the same SQL on both', () => {
  it('is refused by the same constraints and triggers, and leaves the same rows', async () => {
    for (const [sql, want, params = []] of STEPS) {
      const onLite = await outcome(() => lite.prepare(sql).run(...params));
      const onPg = await outcome(() => client.query(numbered(sql), params));
      const ok = (o: string) => (want === 'ok' ? o === 'ok' : want.test(o));
      expect({ sql, sqlite: onLite, ok: ok(onLite) }).toEqual({ sql, sqlite: onLite, ok: true });
      expect({ sql, postgres: onPg, ok: ok(onPg) }).toEqual({ sql, postgres: onPg, ok: true });
    }
    // Rows in seq order compare whole, less the generated seq: a PostgreSQL sequence is not
    // rolled back with a refused insert, so it skips numbers where SQLite's max + 1 does not.
    for (const t of liteTables().filter((t) => t !== 'entitlement_epoch')) {
      const order = TABLE_ORDER[t] ?? 'seq';
      const sql = `SELECT * FROM ${t} ORDER BY ${order}`;
      const generated = !EXPLICIT_SEQ.includes(t) && order === 'seq';
      const strip = (rows: Array<Record<string, unknown>>) =>
        rows.map(({ seq, ...rest }) => (generated ? rest : { seq, ...rest }));
      expect({ table: t, rows: strip(await pgAll(sql)) }).toEqual({
        table: t,
        rows: strip(liteAll(sql)),
      });
    }
    // What the defaults and seqs gave, spelled out (the comparison alone would pass on two wrongs).
    expect(
      liteAll('SELECT id, seq, subject_key, overdraft, borrowed FROM leases ORDER BY seq'),
    ).toEqual([
      { id: 'lease_1', seq: 1n, subject_key: '', overdraft: 0n, borrowed: 0n },
      { id: 'lease_2', seq: 2n, subject_key: 'bob', overdraft: 0n, borrowed: 1n },
    ]);
    expect(liteAll('SELECT seq, id FROM entitlements ORDER BY seq')).toEqual([
      { seq: 1n, id: 'ent_a' },
      { seq: 2n, id: 'ent_b' },
    ]);
    // ent_b came after three refused inserts of it and one of ent_a: PostgreSQL skipped their seqs.
    expect(await pgAll('SELECT seq, id FROM entitlements ORDER BY seq')).toEqual([
      { seq: 1n, id: 'ent_a' },
      { seq: 6n, id: 'ent_b' },
    ]);
    expect(await pgAll('SELECT active_leases, seats_assigned FROM entitlement_counters')).toEqual([
      { active_leases: 2n, seats_assigned: 0n },
    ]);
    expect(await pgAll('SELECT count(*) AS n FROM audit_log')).toEqual([{ n: 2n }]);
  });

  it('never lets TRUNCATE empty an append-only table', async () => {
    await client.query(
      `INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash) VALUES (100, 1, 'a', 'x', '{}', '', 'h')`,
    );
    await client.query(
      `INSERT INTO sync_revocations (entitlement_id, seq, revoked_at) VALUES ('ent_t', 1, 1)`,
    );
    await expect(client.query('TRUNCATE audit_log')).rejects.toThrow(/^audit_log is append-only$/);
    await expect(client.query('TRUNCATE sync_revocations')).rejects.toThrow(
      /^sync_revocations is append-only: revocations are permanent$/,
    );
    expect(await pgAll('SELECT seq FROM audit_log WHERE seq = 100')).toEqual([{ seq: 100n }]);
    expect(await pgAll("SELECT seq FROM sync_revocations WHERE entitlement_id = 'ent_t'")).toEqual([
      { seq: 1n },
    ]);
  });

  it('moves the entitlement epoch on every change of terms, and on nothing else', async () => {
    const epochs = async () => {
      const l = lite.prepare('SELECT value FROM entitlement_epoch').pluck().all() as bigint[];
      const p = (await pgAll<{ value: bigint }>('SELECT value FROM entitlement_epoch')).map(
        (r) => r.value,
      );
      return { l, p };
    };
    const cases: Array<[sql: string, moves: boolean]> = [
      [ent('ent_e'), true],
      [`UPDATE entitlements SET status = 'suspended', updated_at = 5 WHERE id = 'ent_e'`, true],
      [`UPDATE entitlements SET max_seats = 9 WHERE id = 'ent_e'`, true],
      [`UPDATE entitlements SET rev = 3 WHERE id = 'ent_e'`, true],
      // The same value set again is still a change of terms, as in SQLite (UPDATE OF).
      [`UPDATE entitlements SET ends_at = ends_at WHERE id = 'ent_e'`, true],
      [`UPDATE entitlements SET updated_at = 6 WHERE id = 'ent_e'`, false],
      [`UPDATE entitlements SET created_at = 0, updated_at = 7 WHERE id = 'ent_e'`, false],
      [`UPDATE entitlements SET status = 'active' WHERE id = 'nobody'`, false],
      [
        `INSERT INTO entitlement_counters (entitlement_id, seats_assigned) VALUES ('ent_e', 1)`,
        false,
      ],
      [`DELETE FROM entitlement_counters WHERE entitlement_id = 'ent_e'`, false],
      [`DELETE FROM entitlements WHERE id = 'ent_e'`, true],
      [`DELETE FROM entitlements WHERE id = 'ent_e'`, false],
    ];
    for (const [sql, moves] of cases) {
      const before = await epochs();
      expect(before.l).toHaveLength(1);
      expect(before.p).toHaveLength(1);
      lite.prepare(sql).run();
      await client.query(sql);
      const after = await epochs();
      expect({ sql, sqlite: after.l[0] !== before.l[0] }).toEqual({ sql, sqlite: moves });
      expect({ sql, postgres: after.p[0] !== before.p[0] }).toEqual({ sql, postgres: moves });
    }
  });

  it('draws epochs over the whole signed 64-bit range', async () => {
    const rows = await pgAll<{ v: bigint }>(
      'SELECT entitlement_epoch_random() AS v FROM generate_series(1, 2000)',
    );
    const values = rows.map((r) => r.v);
    expect(new Set(values).size).toBe(2000);
    expect(values.some((v) => v < 0n)).toBe(true);
    expect(values.some((v) => v > 0n)).toBe(true);
    // 2000 draws: some beyond 2^62 in size, and some with each of the low 32 bits set.
    expect(values.some((v) => v > 2n ** 62n || v < -(2n ** 62n))).toBe(true);
    expect(values.reduce((acc, v) => acc | BigInt.asUintN(32, v), 0n)).toBe(2n ** 32n - 1n);
  });
});

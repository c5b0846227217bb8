/**
 * A synchronous face on PostgreSQL: the subset of better-sqlite3's connection the repositories use
 * (prepare → get/all/run/iterate/pluck, exec, inTransaction), so src/storage/*.ts serve both stores
 * with one set of SQL. The `pg` clients live on a thread of their own (worker.ts); a call posts the
 * statement there and blocks on an Atomics counter until the answer is on its port.
 *
 * Inside a transaction a write (`run()`) does not wait: it is sent and the next statement follows
 * it on the same connection, so a grant's writes cost no round trip each. Its outcome is read when
 * someone asks (`.changes`), and a failure fails the transaction's next waited statement or its
 * COMMIT. Outside a transaction every statement waits for its answer.
 *
 * SQL is written once in the portable subset (src/storage/*.ts): `?` and `@name` parameters become
 * `$n`, `temp.` becomes `pg_temp.`, `WITHOUT ROWID` is dropped. Nothing else is rewritten.
 *
 * Errors: PostgreSQL's own (with its SQLSTATE `code`), or `code: BPLS_PG_UNAVAILABLE` when the
 * server cannot be reached or did not answer within `callTimeoutMs` (storage/failures.ts answers
 * both as 503 with Retry-After).
 */
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import path from 'node:path';
import {
  endsTransaction,
  READ,
  ROLLBACK_TO,
  TX_START,
  UNAVAILABLE,
  type Reply,
  type Request,
  type WireError,
  type WorkerData,
} from './protocol.ts';

declare const __BPLS_PG_WORKER__: string | undefined;

export { UNAVAILABLE } from './protocol.ts';

/** An error PostgreSQL (or the connection to it) answered, with its SQLSTATE or UNAVAILABLE. */
export class PgError extends Error {
  readonly code: string | undefined;
  readonly detail: string | undefined;
  constructor(e: WireError) {
    super(e.message);
    this.code = e.code;
    this.detail = e.detail;
  }
}

/** While PostgreSQL is unreachable, how often it is pinged off the event loop (ms). */
const DOWN_PING_MS = 250;

export interface PgOptions {
  /** How long a waited statement may block the thread before it is answered UNAVAILABLE (ms). */
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** PostgreSQL's statement_timeout (ms). */
  statementTimeoutMs?: number;
}

export interface RunResult {
  readonly changes: number;
  readonly lastInsertRowid: number;
}

/** A prepared statement: better-sqlite3's calling conventions (positional or one named object). */
export interface PgStatement {
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): RunResult;
  iterate(...params: unknown[]): IterableIterator<unknown>;
  pluck(on?: boolean): PgStatement;
}

/** A statement translated once: its PostgreSQL text and how to order its parameters. */
interface Translated {
  text: string;
  /** For `@name` parameters: the names in $n order; null for positional ones. */
  names: string[] | null;
  isRead: boolean;
  /** BEGIN, COMMIT, ROLLBACK, SAVEPOINT…: always waited for, and tracked. */
  control: boolean;
  name: string;
}

const CONTROL = /^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE)\b/i;

/**
 * Rewrites one statement of the portable subset for PostgreSQL (see the module comment). Quoted
 * strings and identifiers are left as they are.
 */
export function translate(sql: string): { text: string; names: string[] | null } {
  let out = '';
  let n = 0;
  const names: string[] = [];
  let named = false;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      const end = sql.indexOf(c, i + 1);
      const stop = end === -1 ? sql.length : end;
      out += sql.slice(i, stop + 1);
      i = stop;
    } else if (c === '?') {
      out += `$${++n}`;
    } else if (c === '@' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      named = true;
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i + 1))!;
      let k = names.indexOf(m[0]);
      if (k === -1) k = names.push(m[0]) - 1;
      out += `$${k + 1}`;
      i += m[0].length;
    } else {
      out += c;
    }
  }
  out = out
    .replace(/\btemp\./gi, 'pg_temp.')
    .replace(/\s+WITHOUT ROWID\b/gi, '')
    // A read transaction over one snapshot (SQLite's DEFERRED reads one snapshot too).
    .replace(/^\s*BEGIN DEFERRED\b/i, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
  return { text: out, names: named ? names : null };
}

/** The connection string with any password replaced (for logs and messages). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // node-postgres also takes secrets from the query string.
    for (const k of ['password', 'sslpassword', 'sslkey'])
      if (u.searchParams.has(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

export interface PgDb {
  readonly name: string;
  /** The connection string as given (with any password: never log it; `name` is for that). */
  readonly url: string;
  readonly readonly: false;
  readonly open: boolean;
  /** A BEGIN was sent and no COMMIT/ROLLBACK since (on the writer connection). */
  readonly inTransaction: boolean;
  /** Writes sent since the connection opened (the group commit's "did this piece write?"). */
  readonly writes: number;
  /** Counts BEGINs: what a value read "once per transaction" is keyed on. */
  readonly txSerial: number;
  /** Counts ROLLBACK TO SAVEPOINT: writes of the transaction were undone. */
  readonly undone: number;
  prepare(sql: string): PgStatement;
  /** Runs statements without parameters, waiting for the answer; `raw`: the text as it is (DDL). */
  exec(sql: string, o?: { raw?: boolean }): void;
  /** Sends a statement on the writer connection and resolves with its answer (the event loop free). */
  queryAsync(sql: string, params?: unknown[]): Promise<{ rows: unknown[]; count: number }>;
  /** Sends a statement on the writer connection and waits (blocks) for its answer. */
  query(sql: string, params?: unknown[]): { rows: Record<string, unknown>[]; count: number };
  close(): void;
}

/**
 * Opens the connection thread (clients connect on first use, and again after a loss).
 * @throws nothing: an unreachable server is reported by the first statement (UNAVAILABLE).
 */
export function openPg(url: string, opts: PgOptions = {}): PgDb {
  const callTimeoutMs = opts.callTimeoutMs ?? 5000;
  const sync = new MessageChannel();
  const asyncCh = new MessageChannel();
  const wakeBuf = new SharedArrayBuffer(4);
  const wake = new Int32Array(wakeBuf);
  const data: WorkerData = {
    url,
    syncPort: sync.port2,
    asyncPort: asyncCh.port2,
    wake: wakeBuf,
    connectTimeoutMs: opts.connectTimeoutMs ?? 3000,
    statementTimeoutMs: opts.statementTimeoutMs ?? 0,
    // A little under the wait: the thread hears the cut as an answer, not as its own timeout.
    requestTimeoutMs: Math.max(100, callTimeoutMs - 250),
  };
  const options = { workerData: data, transferList: [sync.port2, asyncCh.port2] };
  const worker =
    typeof __BPLS_PG_WORKER__ === 'string'
      ? new Worker(__BPLS_PG_WORKER__, { eval: true, ...options })
      : new Worker(path.join(path.dirname(__filename), 'worker.ts'), options);
  // The thread never keeps the process alive; its clients close with it.
  worker.unref();
  // A thread that died (out of memory, a bug) leaves the store unreachable, never the process
  // dead: every statement is answered UNAVAILABLE from then on (readiness says so).
  let threadGone: string | undefined;
  worker.on('error', (err) => (threadGone ??= String(err)));
  worker.on('exit', (code) => (threadGone ??= `exit code ${code}`));
  const pending = new Map<number, { resolve: (r: Reply) => void }>();
  asyncCh.port1.on('message', (r: Reply) => {
    const p = pending.get(r.id);
    pending.delete(r.id);
    if (pending.size === 0) asyncCh.port1.unref();
    p?.resolve(r);
  });
  asyncCh.port1.unref();
  let nextId = 1;
  let open = true;
  let inTx = false;
  let writes = 0;
  let txSerial = 0;
  let undone = 0;
  const statements = new Map<string, Translated>();
  /** Writes sent without waiting whose answer has not been read off the port yet. */
  const unsettled = new Map<number, { count: number }>();
  let names = 0;

  function trackTx(sql: string): void {
    if (TX_START.test(sql)) {
      inTx = true;
      txSerial++;
    } else if (endsTransaction(sql)) {
      inTx = false;
    } else if (ROLLBACK_TO.test(sql)) {
      undone++;
    }
  }

  function post(req: Request): void {
    if (!open)
      throw new PgError({ message: 'the database connection is closed', code: UNAVAILABLE });
    if (threadGone !== undefined) {
      throw new PgError({
        message: `the PostgreSQL connection thread stopped (${threadGone})`,
        code: UNAVAILABLE,
      });
    }
    worker.postMessage(req);
  }

  /**
   * Unreachable: after a waited statement found PostgreSQL unreachable, waited statements fail at
   * once (a ROLLBACK still goes through) until a ping sent off the event loop is answered, so the
   * thread never blocks again on a server that is gone (a partition can hold a connect for seconds).
   */
  let down = false;
  async function pingUntilUp(): Promise<void> {
    for (;;) {
      await new Promise((r) => setTimeout(r, DOWN_PING_MS).unref());
      if (!open) return;
      try {
        // Bounded: a ping lost with its connection must not keep the driver down for ever.
        await Promise.race([
          db.queryAsync('SELECT 1'),
          new Promise((_, reject) => setTimeout(reject, callTimeoutMs).unref()),
        ]);
        down = false;
        return;
      } catch {
        // still gone
      }
    }
  }
  function noteUnreachable(): void {
    if (down) return;
    down = true;
    void pingUntilUp();
  }

  /** Posts and blocks until the answer (or callTimeoutMs). */
  function call(req: Omit<Request, 'id' | 'reply'>): {
    rows: Record<string, unknown>[];
    count: number;
  } {
    if (down) {
      // Nothing is waited for: a ROLLBACK is sent (the thread ends the transaction in turn), the
      // rest fail at once; a BEGIN that was not sent opened nothing.
      if (/^\s*ROLLBACK\s*;?\s*$/i.test(req.sql)) {
        post({ ...req, id: nextId++, reply: 'none' });
        return { rows: [], count: 0 };
      }
      if (TX_START.test(req.sql)) inTx = false;
      throw new PgError({
        message: 'the PostgreSQL server cannot be reached (waiting for it to answer again)',
        code: UNAVAILABLE,
      });
    }
    try {
      return waitFor(req);
    } catch (err) {
      if ((err as PgError).code === UNAVAILABLE) noteUnreachable();
      throw err;
    }
  }

  function waitFor(req: Omit<Request, 'id' | 'reply'>): {
    rows: Record<string, unknown>[];
    count: number;
  } {
    const id = nextId++;
    let seen = Atomics.load(wake, 0);
    post({ ...req, id, reply: 'sync' });
    const deadline = performance.now() + callTimeoutMs;
    let lastLook = false;
    for (;;) {
      const m = receiveMessageOnPort(sync.port1) as { message: Reply } | undefined;
      if (m) {
        if (m.message.id !== id) {
          // A write sent without waiting (its row count), or the late answer of a timed-out call.
          const slot = unsettled.get(m.message.id);
          if (slot) {
            unsettled.delete(m.message.id);
            slot.count = m.message.ok ? m.message.count : 0;
          }
          continue;
        }
        if (m.message.ok) return m.message;
        throw new PgError(m.message.error);
      }
      if (lastLook) {
        throw new PgError({
          message: `the PostgreSQL server did not answer within ${callTimeoutMs} ms`,
          code: UNAVAILABLE,
        });
      }
      const left = deadline - performance.now();
      // Past the deadline: one more look at the port (an answer that came just then counts).
      if (left <= 0 || Atomics.wait(wake, 0, seen, left) === 'timed-out') lastLook = true;
      seen = Atomics.load(wake, 0);
    }
  }

  function bind(t: Translated, params: unknown[]): unknown[] {
    if (t.names === null) return params.map(toParam);
    const obj = (params[0] ?? {}) as Record<string, unknown>;
    return t.names.map((k) => toParam(obj[k]));
  }

  function translated(sql: string): Translated {
    let t = statements.get(sql);
    if (!t) {
      const { text, names: ns } = translate(sql);
      t = {
        text,
        names: ns,
        isRead: READ.test(sql),
        control: CONTROL.test(sql),
        name: `bpls_${++names}`,
      };
      statements.set(sql, t);
    }
    return t;
  }

  function runStatement(t: Translated, params: unknown[]) {
    // Plain reads outside a transaction go to the reader: they never queue behind a commit.
    const conn: 0 | 1 = !inTx && t.isRead ? 1 : 0;
    return call({ conn, sql: t.text, params: bind(t, params), name: t.name });
  }

  const db: PgDb = {
    name: redactUrl(url),
    url,
    readonly: false,
    get open() {
      return open;
    },
    get inTransaction() {
      return inTx;
    },
    get writes() {
      return writes;
    },
    get txSerial() {
      return txSerial;
    },
    get undone() {
      return undone;
    },
    prepare(sql: string): PgStatement {
      const t = translated(sql);
      let plucked = false;
      const first = (row: Record<string, unknown> | undefined) =>
        row === undefined || !plucked ? row : row[Object.keys(row)[0]!];
      const stmt: PgStatement = {
        get: (...p) => first(runStatement(t, p).rows[0]),
        all: (...p) => {
          const rows = runStatement(t, p).rows;
          return plucked ? rows.map((r) => r[Object.keys(r)[0]!]) : rows;
        },
        iterate: (...p) => stmt.all(...p)[Symbol.iterator](),
        run: (...p) => {
          if (t.control) {
            trackTx(t.text);
            const r = call({ conn: 0, sql: t.text });
            return { changes: r.count, lastInsertRowid: 0 };
          }
          if (!t.isRead) writes++;
          if (inTx && !t.isRead) {
            // Sent without waiting (see the module comment); its answer is collected by the next
            // waited call, and `changes` waits for one (a barrier) when it is not in yet.
            const id = nextId++;
            const slot = { count: -1 };
            unsettled.set(id, slot);
            post({ id, conn: 0, sql: t.text, params: bind(t, p), name: t.name, reply: 'sync' });
            return {
              get changes() {
                if (slot.count < 0) call({ conn: 0, sql: 'SELECT 1' });
                return Math.max(0, slot.count);
              },
              lastInsertRowid: 0,
            };
          }
          const r = runStatement(t, p);
          return { changes: r.count, lastInsertRowid: 0 };
        },
        pluck(on = true) {
          plucked = on;
          return stmt;
        },
      };
      return stmt;
    },
    exec(sql: string, o: { raw?: boolean } = {}): void {
      trackTx(sql);
      if (!READ.test(sql)) writes++;
      call({ conn: 0, sql: o.raw ? sql : translate(sql).text, multi: true });
    },
    query(sql, params = []) {
      trackTx(sql);
      return call({ conn: 0, sql, params: params.map(toParam) });
    },
    queryAsync(sql, params = []) {
      trackTx(sql);
      const id = nextId++;
      const p = new Promise<Reply>((resolve) => pending.set(id, { resolve }));
      post({ id, conn: 0, sql, params: params.map(toParam), reply: 'async' });
      // An answer awaited keeps the process alive (a COMMIT at shutdown is answered, and the
      // drain goes on); with none awaited the port lets the process end.
      if (pending.size === 1) asyncCh.port1.ref();
      return p.then((r) => {
        if (!r.ok) throw new PgError(r.error);
        return { rows: r.rows, count: r.count };
      });
    },
    close() {
      if (!open) return;
      open = false;
      worker.postMessage({ close: true });
      sync.port1.close();
      asyncCh.port1.close();
      void worker.terminate();
    },
  };

  return db;
}

/** Values as better-sqlite3 takes them; booleans as 0/1, bigint as text. */
function toParam(v: unknown): unknown {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return v.toString();
  return v === undefined ? null : v;
}

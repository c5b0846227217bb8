/**
 * The PostgreSQL connection thread (driver.ts starts it). It owns the `pg` clients, so the main
 * thread can ask a question and block on the answer (Atomics.wait) while the socket is served
 * here: the repositories stay synchronous on both stores.
 *
 * Requests arrive in order on one port and each is handed to its client at once; a `pg` client
 * runs its queries in the order it was given them, so a statement sent without waiting (a write
 * inside a transaction) still runs before the next one. Two clients: 0 the writer (transactions and
 * every write), 1 the reader (plain reads outside a transaction).
 *
 * Connection loss: the client is dropped and the next request connects again (the server needs no
 * restart when PostgreSQL comes back). A transaction that was open when its connection went is
 * refused to the end: every statement is answered with the loss until the main thread's ROLLBACK,
 * so nothing of it can run outside a transaction on the next connection. A write sent without
 * waiting that fails makes the same first error the answer to every later statement of its
 * transaction (PostgreSQL would only say "current transaction is aborted").
 */
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import {
  COMMIT,
  endsTransaction,
  ROLLBACK_TO,
  TX_START,
  UNAVAILABLE,
  type Reply,
  type Request,
  type WireError,
  type WorkerData,
} from './protocol.ts';

const data = workerData as WorkerData;
const wake = new Int32Array(data.wake);

// Whole numbers come back as numbers (times are epoch ms, far below 2^53), flags as 0/1: what
// better-sqlite3 answers, so one repository reads both stores.
const NUMBER = (v: string) => Number(v);
const PARSERS: Record<number, (v: string) => unknown> = {
  20: NUMBER, // int8
  1700: NUMBER, // numeric (sum of int8)
  16: (v: string) => (v === 't' ? 1 : 0), // bool
};
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    PARSERS[oid] ?? pg.types.getTypeParser(oid, format ?? 'text'),
};

interface Conn {
  client: pg.Client | null;
  connecting: Promise<pg.Client> | null;
  inTx: boolean;
  /** Counts transactions begun: a late failure is charged to its own transaction only. */
  gen: number;
  /** The client the open transaction began on. */
  txClient: pg.Client | null;
  /** The statements handed to the client, in order: the next one starts when this settles. */
  tail: Promise<unknown>;
  /** The first failure of transaction `gen`: every later statement of it answers this. */
  txError: WireError | null;
}

const newConn = (): Conn => ({
  client: null,
  connecting: null,
  inTx: false,
  gen: 0,
  txClient: null,
  tail: Promise.resolve(),
  txError: null,
});
const conns: [Conn, Conn] = [newConn(), newConn()];

function unavailable(reason: string): WireError {
  return { message: `the PostgreSQL server cannot be reached (${reason})`, code: UNAVAILABLE };
}

function toWire(err: unknown): WireError {
  const e = err as { message?: string; code?: string; detail?: string };
  const code = typeof e.code === 'string' ? e.code : undefined;
  // Socket-level failures carry Node's codes (ECONNREFUSED…), PostgreSQL's classes 08 and 57P
  // (connection, shutdown), or no code and pg's words for a lost or timed-out connection.
  const lost = /connect|terminat|timeout|timed out|closed|socket|ended/i.test(e.message ?? '');
  if (
    (code === undefined && lost) ||
    (code !== undefined && /^E[A-Z]+$/.test(code)) ||
    code?.startsWith('08') ||
    code?.startsWith('57P')
  ) {
    return unavailable(e.message ?? String(err));
  }
  // pg's own words for a login it could not even attempt (a password the server asks for and the
  // URL and PGPASSWORD do not give): a refused login, as PostgreSQL's 28P01 says it.
  if (code === undefined && /SASL|SCRAM|password/i.test(e.message ?? '')) {
    return { message: e.message ?? String(err), code: '28P01' };
  }
  // Anything else without a code is ours (a bug), not the database's absence.
  if (code === undefined) return { message: e.message ?? String(err), code: 'BPLS_PG_DRIVER' };
  return {
    message: e.message ?? String(err),
    code,
    ...(e.detail ? { detail: e.detail } : {}),
  };
}

function drop(conn: Conn, client: pg.Client, reason: string): void {
  if (conn.client !== client) return;
  conn.client = null;
  if (conn.inTx && !conn.txError) conn.txError = unavailable(reason);
  client.end().catch(() => {});
}

/** Cuts a client's socket: its queued statements fail, and `drop` forgets it. */
function cut(client: pg.Client): void {
  const c = client as unknown as { connection?: { stream?: { destroy(): void } } };
  c.connection?.stream?.destroy();
}

function connect(conn: Conn): Promise<pg.Client> {
  if (conn.client) return Promise.resolve(conn.client);
  conn.connecting ??= (async () => {
    const client = new pg.Client({
      connectionString: data.url,
      connectionTimeoutMillis: data.connectTimeoutMs,
      keepAlive: true,
      // A peer that vanished (a partition, a dead host) is noticed by TCP within ~10 s + probes.
      keepAliveInitialDelayMillis: 10_000,
      application_name: 'bp-license-server',
      types,
      ...(data.statementTimeoutMs > 0 ? { statement_timeout: data.statementTimeoutMs } : {}),
    });
    client.on('error', (err) => drop(conn, client, err.message));
    client.on('end', () => drop(conn, client, 'connection closed'));
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => {});
      throw err;
    }
    conn.client = client;
    return client;
  })().finally(() => {
    conn.connecting = null;
  });
  return conn.connecting;
}

function answer(req: Request, reply: Reply): void {
  if (req.reply === 'sync') {
    data.syncPort.postMessage(reply);
    Atomics.add(wake, 0, 1);
    Atomics.notify(wake, 0);
  } else if (req.reply === 'async') {
    data.asyncPort.postMessage(reply);
  }
}

const ok = (id: number): Reply => ({ id, ok: true, rows: [], count: 0 });

function handle(req: Request): void {
  const conn = conns[req.conn];
  const starts = TX_START.test(req.sql);
  const ends = endsTransaction(req.sql);
  const isCommit = ends && COMMIT.test(req.sql);
  if (conn.inTx && conn.txError && ROLLBACK_TO.test(req.sql) && conn.txError.code !== UNAVAILABLE) {
    // Back to a savepoint before the failure: the transaction goes on.
    conn.txError = null;
    lastFailure.delete(conn);
  }
  if (conn.inTx && conn.txError) {
    // The transaction failed earlier: only its end does anything (a ROLLBACK; a COMMIT is refused).
    const failed = conn.txError;
    if (ends) {
      conn.inTx = false;
      conn.txError = null;
      // Decided in turn: a BEGIN still queued may yet run (on a new client) and must be ended.
      conn.tail = conn.tail
        .then(() => {
          const client = conn.txClient;
          if (client && client === conn.client) return client.query('ROLLBACK');
          return undefined;
        })
        .catch(() => {});
      if (!isCommit) return answer(req, ok(req.id));
    }
    return answer(req, { id: req.id, ok: false, error: failed });
  }
  if (starts) {
    conn.inTx = true;
    conn.gen++;
    conn.txError = null;
  }
  const gen = conn.gen;
  const inTx = conn.inTx && !ends;
  if (ends) conn.inTx = false;
  const run = async (): Promise<Reply> => {
    // A transaction runs on the client it began on: one that is gone (and any new one) is refused
    // to it, so none of its statements can run outside it.
    let client: pg.Client;
    if (starts || !(inTx || ends)) {
      client = conn.client ?? (await connect(conn));
      if (starts) conn.txClient = client;
    } else if (conn.txClient && conn.txClient === conn.client) {
      client = conn.txClient;
    } else {
      throw Object.assign(new Error('connection lost during the transaction'), {
        code: UNAVAILABLE,
      });
    }
    // A statement unanswered past the deadline: the connection is cut (a silent peer would hold
    // it for TCP's hours), which fails this statement and its transaction as unreachable.
    const deadline = setTimeout(() => cut(client), data.requestTimeoutMs);
    let result;
    try {
      result = req.multi
        ? await client.query(req.sql)
        : await client.query({
            text: req.sql,
            values: req.params ?? [],
            ...(req.name ? { name: req.name } : {}),
          });
    } finally {
      clearTimeout(deadline);
    }
    const r = Array.isArray(result) ? result[result.length - 1] : result;
    // COMMIT of a transaction a statement failed in is a ROLLBACK (PostgreSQL says so only in the
    // command tag): never an acknowledged commit. The failure itself is the answer.
    if (isCommit && r?.command === 'ROLLBACK') {
      const failed = lastFailure.get(conn);
      return {
        id: req.id,
        ok: false,
        error:
          failed && failed.gen === gen
            ? failed.error
            : {
                message:
                  'PostgreSQL rolled the transaction back at COMMIT (a statement in it failed)',
                code: '25P02',
              },
      };
    }
    return { id: req.id, ok: true, rows: r?.rows ?? [], count: r?.rowCount ?? 0 };
  };
  // One statement at a time per connection, in arrival order (pg would queue them too, but
  // deprecates it); the thread never waits: the chain does.
  conn.tail = conn.tail
    .then(() => run())
    .then(
      (reply) => answer(req, reply),
      (err) => {
        // Queued behind a write that failed: PostgreSQL says only "transaction is aborted"; the
        // first failure of this transaction is the answer.
        const own = toWire(err);
        const first = lastFailure.get(conn);
        const error = own.code === '25P02' && first && first.gen === gen ? first.error : own;
        if (inTx || ends) {
          if (!first || first.gen !== gen) lastFailure.set(conn, { gen, error });
          if (conn.inTx && conn.gen === gen && !conn.txError) conn.txError = error;
        } else if (req.reply === 'none') {
          // Nobody waits for it and no transaction will report it: say so on stderr.
          process.stderr.write(`bp-license-server: PostgreSQL write failed: ${error.message}\n`);
        }
        answer(req, { id: req.id, ok: false, error });
      },
    );
}

/** Each connection's first failure in its latest failed transaction (by generation). */
const lastFailure = new Map<Conn, { gen: number; error: WireError }>();

parentPort!.on('message', (msg: Request | { close: true }) => {
  if ('close' in msg) {
    for (const c of conns) void c.client?.end().catch(() => {});
    parentPort!.close();
    return;
  }
  handle(msg);
});

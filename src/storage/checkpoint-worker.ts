// The WAL checkpointer's thread (started by checkpointer.ts). It owns a second connection to the
// database and copies the WAL into it, so the serving thread never does (its wal_autocheckpoint is
// off): a checkpoint of tens of MB run inside a commit was a latency spike of 100+ ms.
//
// Self-contained on purpose: it imports only node built-ins and better-sqlite3. From the sources
// (vitest) Node runs this file itself (type stripping); in dist/cli.cjs and the single executable
// scripts/build.mjs bundles it to a string the main bundle runs with `eval: true`. Inside the
// executable `require` loads built-ins only, so the addon comes by path (`addonFile`, the file
// native.ts loaded) and is opened with process.dlopen: the same file as the serving thread's, so
// one SQLite library (one table of POSIX locks) serves both connections, as SQLite requires.
//
// Each round: a PASSIVE checkpoint (no lock; writers go on appending). A writer starts the WAL
// again from its beginning only once every frame is copied, which a checkpoint on another thread
// never reaches under steady load (commits keep coming). So when the WAL holds more than
// `restartBytes`, the worker copies again what was appended during its first pass, then asks the
// serving thread to copy the few frames left itself (a PASSIVE checkpoint between two turns of its
// event loop: a small copy and one fsync, about a commit's cost, no lock to wait on); its next
// commit restarts the WAL. (A RESTART checkpoint here would hold the write lock while the serving
// thread sleeps in its busy handler, whose 1, 2, 5, 10 ms steps overshoot: a first version did
// that, and its longest stall was several times the serving thread's own checkpoint.) TRUNCATE,
// here, when the WAL file is over `truncateBytes` (a long reader let it grow, or it filled the
// disk), when asked (storage writable again) and at start.
import * as os from 'node:os';
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** What checkpointer.ts passes as workerData. */
export interface CheckpointWorkerData {
  file: string;
  /** The better-sqlite3 addon file to dlopen; undefined when better-sqlite3 finds its own. */
  addonFile: string | undefined;
  intervalMs: number;
  restartBytes: number;
  truncateBytes: number;
  busyTimeoutMs: number;
}

/** Messages to the worker. */
export type CheckpointCommand = { type: 'truncate' } | { type: 'stop' };

/** Messages from the worker. */
export type CheckpointReport =
  | { type: 'ready' }
  | { type: 'checkpoint'; mode: 'TRUNCATE'; ms: number; walFrames: number; busy: boolean }
  /** The WAL is over restartBytes and all but `pending` frames are copied: the serving thread copies the rest. */
  | { type: 'restart'; walFrames: number; pending: number }
  | { type: 'error'; code: string | undefined; message: string }
  | { type: 'ok' }
  | { type: 'stopped' };

const data = workerData as CheckpointWorkerData;
const port = parentPort!;

function send(m: CheckpointReport): void {
  port.postMessage(m);
}

function openConnection(): Database.Database {
  const options: Database.Options = { fileMustExist: true, timeout: data.busyTimeoutMs };
  if (data.addonFile !== undefined) {
    const mod = { exports: {} as object };
    process.dlopen(mod, data.addonFile, os.constants.dlopen.RTLD_NOW);
    (options as { nativeBinding?: unknown }).nativeBinding = mod.exports;
  }
  const db = new Database(data.file, options);
  try {
    // No autocheckpoint here either: this connection never writes, but say so.
    db.pragma('wal_autocheckpoint = 0');
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

let db: Database.Database | undefined;
let timer: NodeJS.Timeout | undefined;
let truncateWanted = true; // at start: a WAL left big (a full disk, a crash) is copied and cut
let failing = false;

function walFileBytes(): number {
  try {
    return fs.statSync(`${data.file}-wal`).size;
  } catch {
    return 0;
  }
}

function checkpoint(mode: 'PASSIVE' | 'TRUNCATE'): { busy: boolean; log: number; done: number } {
  const t0 = performance.now();
  const row = db!.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as {
    busy: number;
    log: number;
    checkpointed: number;
  };
  const r = { busy: row.busy !== 0, log: row.log, done: row.checkpointed };
  if (mode === 'TRUNCATE')
    send({ type: 'checkpoint', mode, ms: performance.now() - t0, walFrames: r.log, busy: r.busy });
  return r;
}

function round(): void {
  try {
    db ??= openConnection();
    const pageBytes = (db.pragma('page_size', { simple: true }) as number) + 24;
    let r = checkpoint('PASSIVE');
    if (truncateWanted || walFileBytes() > data.truncateBytes) {
      // The first PASSIVE copied nearly all without a lock: the TRUNCATE holds it for the rest.
      const t = checkpoint('TRUNCATE');
      if (!t.busy) truncateWanted = false;
    } else if (r.log * pageBytes > data.restartBytes) {
      // Again, for what was appended during the first: the serving thread is left only a few frames.
      r = checkpoint('PASSIVE');
      if (r.done > 0) send({ type: 'restart', walFrames: r.log, pending: r.log - r.done });
    }
    if (failing) {
      failing = false;
      send({ type: 'ok' });
    }
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // Another connection mid-recovery or mid-checkpoint: next round (this thread never waits).
    if (
      typeof code === 'string' &&
      (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    )
      return;
    // Reported once per run of failures; the serving side keeps the episode and its log line.
    if (!failing) {
      failing = true;
      const e = err as { code?: unknown; message?: unknown };
      send({
        type: 'error',
        code: typeof e.code === 'string' ? e.code : undefined,
        message: String(e.message ?? err),
      });
    }
  }
}

function stop(): void {
  if (timer) clearInterval(timer);
  try {
    db?.close();
  } catch {
    /* closing is best effort: the process is stopping */
  }
  db = undefined;
  send({ type: 'stopped' });
  port.close();
}

port.on('message', (m: CheckpointCommand) => {
  if (m.type === 'truncate') {
    truncateWanted = true;
    round();
  } else if (m.type === 'stop') stop();
});

round();
timer = setInterval(round, data.intervalMs);
send({ type: 'ready' });

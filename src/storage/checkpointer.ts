import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Db } from './db.ts';
import type { Logger } from '../log.ts';
import type { CheckpointCommand, CheckpointReport, CheckpointWorkerData } from './checkpoint-worker.ts';

// scripts/build.mjs defines it: checkpoint-worker.ts bundled to one script (better-sqlite3's JS
// inlined). Undefined from the sources, where Node runs the .ts file itself.
declare const __BPLS_CHECKPOINT_WORKER__: string | undefined;

/** A commit restarts the WAL at its beginning once it holds this much and is all copied. */
export const WAL_RESTART_BYTES = 16 << 20;
/** A WAL file bigger than this (a long reader held it, a full disk stopped it) is copied and cut to zero. */
export const WAL_TRUNCATE_BYTES = 64 << 20;
/** After a restart the serving connection cuts the WAL file back to this size (journal_size_limit). */
export const WAL_KEEP_BYTES = 16 << 20;
/** How often the worker checkpoints. */
export const CHECKPOINT_INTERVAL_MS = 200;

export interface CheckpointerOptions {
  /** The serving connection: its own autocheckpoint is turned off while the worker runs. */
  db: Db;
  /** The database file. */
  file: string;
  /** The better-sqlite3 addon file (native.ts sqliteAddonFile()); undefined from the sources. */
  addonFile: string | undefined;
  log: Logger;
  /** A checkpoint failed for a storage reason (full disk, read-only, I/O): the worker reports once per run of failures. */
  onFailure?: (err: { code: string | undefined; message: string }) => void;
  intervalMs?: number;
  restartBytes?: number;
  truncateBytes?: number;
}

export interface Checkpointer {
  /** Copy the whole WAL and cut it to zero now (storage writable again after an episode). */
  truncate(): void;
  /** Bytes of the WAL file now (0 when there is none). */
  walBytes(): number;
  /** Checkpoints that took the write lock (RESTART, TRUNCATE) and their longest duration, ms. */
  stats(): { locking: number; maxLockingMs: number; running: boolean };
  /** Stops the worker (its connection closed) before the serving connection closes. */
  close(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the serving thread: a worker thread with its own connection
 * (checkpoint-worker.ts) copies the WAL every `intervalMs`, and the serving connection's
 * `wal_autocheckpoint` is set to 0 (it ran the copy inside a commit: a latency spike). The WAL stays
 * bounded: RESTART past `restartBytes`, TRUNCATE past `truncateBytes`, at start and on
 * `truncate()`, and `journal_size_limit` on the serving connection. Should the worker fail to start
 * or die, the serving connection gets its autocheckpoint back (logged once): bounded, if spikier.
 */
export function startCheckpointer(opts: CheckpointerOptions): Checkpointer {
  const { db, log } = opts;
  const walFile = `${opts.file}-wal`;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.pragma(`journal_size_limit = ${WAL_KEEP_BYTES}`);
  let running = false;
  let locking = 0;
  let maxLockingMs = 0;
  let stopping = false;

  const fallback = (why: string) => {
    if (!running && stopping) return;
    running = false;
    db.pragma(`wal_autocheckpoint = ${Math.floor(WAL_TRUNCATE_BYTES / pageSize)}`);
    log.error('WAL checkpoint thread stopped; checkpoints run in commits again', { error: why });
  };

  const data: CheckpointWorkerData = {
    file: opts.file,
    addonFile: opts.addonFile,
    intervalMs: opts.intervalMs ?? CHECKPOINT_INTERVAL_MS,
    restartBytes: opts.restartBytes ?? WAL_RESTART_BYTES,
    truncateBytes: opts.truncateBytes ?? WAL_TRUNCATE_BYTES,
    // Short: a RESTART holds the write lock while it waits for readers, and the serving thread
    // waits on that lock. A round that finds the lock busy just tries again next round.
    busyTimeoutMs: 50,
  };
  let worker: Worker;
  try {
    worker =
      typeof __BPLS_CHECKPOINT_WORKER__ === 'string'
        ? new Worker(__BPLS_CHECKPOINT_WORKER__, { eval: true, workerData: data })
        : new Worker(path.join(path.dirname(__filename), 'checkpoint-worker.ts'), { workerData: data });
  } catch (err) {
    fallback(String(err));
    return { truncate() {}, walBytes: () => fileSize(walFile), stats: () => ({ locking, maxLockingMs, running }), close: async () => {} };
  }
  running = true;
  db.pragma('wal_autocheckpoint = 0');
  // The worker never keeps the process alive.
  worker.unref();
  worker.on('message', (m: CheckpointReport) => {
    if (m.type === 'checkpoint') {
      locking++;
      if (m.ms > maxLockingMs) maxLockingMs = m.ms;
      if (m.mode === 'TRUNCATE' && !m.busy) log.debug('WAL truncated', { ms: Math.round(m.ms) });
    } else if (m.type === 'error') {
      opts.onFailure?.({ code: m.code, message: m.message });
    }
  });
  worker.on('error', (err) => fallback(String(err)));
  worker.on('exit', (code) => {
    if (!stopping) fallback(`exit code ${code}`);
    running = false;
  });

  return {
    truncate() {
      if (running) worker.postMessage({ type: 'truncate' } satisfies CheckpointCommand);
    },
    walBytes: () => fileSize(walFile),
    stats: () => ({ locking, maxLockingMs, running }),
    close() {
      if (stopping) return Promise.resolve();
      stopping = true;
      if (!running) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => void worker.terminate(), 2000);
        worker.once('exit', () => {
          clearTimeout(force);
          running = false;
          resolve();
        });
        worker.postMessage({ type: 'stop' } satisfies CheckpointCommand);
      });
    },
  };
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Db } from './db.ts';
import type { Logger } from '../log.ts';
import { startPeriodic } from '../periodic.ts';
import type {
  CheckpointCommand,
  CheckpointReport,
  CheckpointWorkerData,
} from './checkpoint-worker.ts';

// scripts/build.mjs defines it: checkpoint-worker.ts bundled to one script (better-sqlite3's JS
// inlined). Undefined from the sources, where Node runs the .ts file itself.
declare const __BPLS_CHECKPOINT_WORKER__: string | undefined;

/** Past this much WAL, the serving thread copies the last frames so its next commit restarts the WAL at its beginning. */
export const WAL_RESTART_BYTES = 16 << 20;
/** A WAL file bigger than this (a long reader held it, a full disk stopped it) is copied and cut to zero. */
export const WAL_TRUNCATE_BYTES = 64 << 20;
// The worker allocates next to nothing: a small heap keeps its isolate's share of the RSS small.
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

/** The worker starts once the WAL file passes this size (or at start, when a WAL is there). */
export const WORKER_START_BYTES = 1 << 20;
const WATCH_INTERVAL_MS = 1000;

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
  /** Checkpoints run on the serving thread (the last frames before a WAL restart) and the longest, ms. */
  stats(): { serving: number; maxServingMs: number; truncates: number; running: boolean };
  /** Stops the worker (its connection closed) before the serving connection closes. */
  close(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the serving thread: a worker thread with its own connection
 * (checkpoint-worker.ts) copies the WAL every `intervalMs`, and the serving connection's
 * `wal_autocheckpoint` is set to 0 (it ran the copy inside a commit: a latency spike). The WAL stays
 * bounded: a restart past `restartBytes` (the serving thread copies the last few frames), TRUNCATE
 * past `truncateBytes`, when a WAL is found at start and on `truncate()`, and `journal_size_limit`
 * on the serving connection. The worker starts once the WAL passes WORKER_START_BYTES. Should it
 * fail to start or die, the serving connection gets its autocheckpoint back (logged once):
 * bounded, if spikier.
 */
export function startCheckpointer(opts: CheckpointerOptions): Checkpointer {
  const { db, log } = opts;
  const walFile = `${opts.file}-wal`;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  let running = false;
  let failed = false;
  let serving = 0;
  let maxServingMs = 0;
  let truncates = 0;
  let stopping = false;
  let worker: Worker | undefined;
  const stats = () => ({ serving, maxServingMs, truncates, running });
  const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

  const fallback = (why: string) => {
    running = false;
    if (stopping || failed) return;
    failed = true;
    void watch.stop();
    db.pragma(`wal_autocheckpoint = ${Math.floor(WAL_TRUNCATE_BYTES / pageSize)}`);
    log.error('WAL checkpoint thread stopped; checkpoints run in commits again', { error: why });
  };

  const data: CheckpointWorkerData = {
    file: opts.file,
    addonFile: opts.addonFile,
    intervalMs: opts.intervalMs ?? CHECKPOINT_INTERVAL_MS,
    restartBytes: opts.restartBytes ?? WAL_RESTART_BYTES,
    truncateBytes: opts.truncateBytes ?? WAL_TRUNCATE_BYTES,
    // None: a TRUNCATE holds the write lock while it waits for readers (a backup reading for
    // minutes), and the serving thread would wait on that lock. A round that finds the lock or a
    // reader busy just tries again next round.
    busyTimeoutMs: 0,
  };

  function onMessage(m: CheckpointReport): void {
    if (m.type === 'restart') {
      // Between two turns of the event loop no transaction of ours is open, and nobody else
      // appends: this copies what the worker could not reach, and the next commit restarts the WAL.
      if (!db.open || db.inTransaction) return;
      const t0 = performance.now();
      try {
        passive.run();
      } catch (err) {
        opts.onFailure?.({
          code: (err as { code?: string }).code,
          message: String((err as Error).message),
        });
        return;
      }
      const ms = performance.now() - t0;
      serving++;
      if (ms > maxServingMs) maxServingMs = ms;
    } else if (m.type === 'checkpoint') {
      if (!m.busy) truncates++;
      if (!m.busy) log.debug('WAL truncated', { ms: Math.round(m.ms) });
    } else if (m.type === 'error') {
      opts.onFailure?.({ code: m.code, message: m.message });
    }
  }

  /** Starts the worker (its first round cuts the WAL to zero). False when it cannot run. */
  function ensureWorker(): boolean {
    if (running) return true;
    if (failed || stopping) return false;
    try {
      worker =
        typeof __BPLS_CHECKPOINT_WORKER__ === 'string'
          ? new Worker(__BPLS_CHECKPOINT_WORKER__, {
              eval: true,
              workerData: data,
              resourceLimits: WORKER_LIMITS,
            })
          : new Worker(path.join(path.dirname(__filename), 'checkpoint-worker.ts'), {
              workerData: data,
              resourceLimits: WORKER_LIMITS,
            });
    } catch (err) {
      fallback(String(err));
      return false;
    }
    running = true;
    void watch.stop();
    // The worker never keeps the process alive.
    worker.unref();
    worker.on('message', onMessage);
    worker.on('error', (err) => fallback(String(err)));
    worker.on('exit', (code) => fallback(`exit code ${code}`));
    return true;
  }

  // The worker is a second V8 isolate (~11 MB resident): an idle server does without it until
  // its WAL passes WORKER_START_BYTES (a stat a second, never per request), or at once when a WAL
  // is there at start (a crash, a full disk): its first round cuts it.
  db.pragma('wal_autocheckpoint = 0');
  const watch = startPeriodic({
    intervalMs: WATCH_INTERVAL_MS,
    run: () => void (fileSize(walFile) > WORKER_START_BYTES && ensureWorker()),
    onError: (err) => fallback(String(err)),
  });
  if (fileSize(walFile) > 0) ensureWorker();

  return {
    truncate() {
      if (ensureWorker()) worker!.postMessage({ type: 'truncate' } satisfies CheckpointCommand);
    },
    walBytes: () => fileSize(walFile),
    stats,
    close() {
      void watch.stop();
      if (stopping) return Promise.resolve();
      stopping = true;
      const w = worker;
      if (!running || !w) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => void w.terminate(), 2000);
        w.once('exit', () => {
          clearTimeout(force);
          running = false;
          resolve();
        });
        w.postMessage({ type: 'stop' } satisfies CheckpointCommand);
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

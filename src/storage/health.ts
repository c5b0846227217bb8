import * as fs from 'node:fs';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Db } from './db.ts';
import { storageFailure } from './failures.ts';
import { startPeriodic, type PeriodicTask } from '../periodic.ts';

/** `ok`, or why writes fail now: the codes the clients get (storage/failures.ts). */
export type StorageCondition = 'ok' | 'storage_full' | 'storage_unavailable';

/** While in an episode, writability is probed at most this often (on /readyz and by a timer). */
export const PROBE_INTERVAL_MS = 1000;
/** A full disk counts as writable again only with this much free: one probe row fits in less, a batch of grants may not. */
export const FREE_BYTES_TO_RECOVER = 1 << 20;

export interface StorageHealthOptions {
  /** The serving connection (SQLite); or give `probeWrite`. */
  db?: Db;
  /** Another store's probe: one small durable write, throwing when it fails (PostgreSQL). */
  probeWrite?: () => void;
  /**
   * False when the database is not on `dir`'s disk (PostgreSQL): its free space then says nothing
   * about a failure, and is not read. Default true.
   */
  localDisk?: boolean;
  /** The folder holding the database (free space is read there). */
  dir: string;
  log: Logger;
  now?: () => number;
  probeIntervalMs?: number;
  /** Called when an episode ends (the checkpointer then cuts the WAL). */
  onRecovered?: () => void;
}

export interface StorageHealth {
  /**
   * Notes a failure where it is answered or caught. For a storage failure (full, read-only or
   * failing storage; not `busy`, which is another process's lock, nor a bug) it returns the error
   * to answer, else undefined: the first one starts an episode, logged once as a warning with its
   * code; the rest are counted. An I/O error while the disk is full (SQLite reports a failed fsync
   * or shared-memory growth as SQLITE_IOERR_*, not SQLITE_FULL) is answered `storage_full`.
   */
  failed(err: unknown): AppError | undefined;
  /** The condition, probing writability first when in an episode and the last probe is old. */
  check(): StorageCondition;
  /** The condition as last known, without probing (metrics). */
  condition(): StorageCondition;
  /** Starts an episode when the disk has less than FREE_BYTES_TO_RECOVER free (at start: not ready before the first write fails). */
  checkSpace(): void;
  /** Writes refused for storage reasons since start. */
  failedWrites(): number;
  close(): void;
}

/**
 * Storage episodes: from the first write that fails because the disk is full or the storage is
 * read-only or failing, to the first probe that commits again. One log line starts it (warn, with
 * the code and SQLite's error code) and one ends it (info "storage writable again", with how long it
 * lasted and how many writes were refused), instead of a line per request. Readiness follows it.
 *
 * The probe is a real write, as a grant would do it: BEGIN IMMEDIATE, an upsert of one
 * `server_state` row, COMMIT (synchronous=FULL, so fsynced). A write rolled back proves nothing: it
 * never reaches the WAL. After a full disk, the folder must also have FREE_BYTES_TO_RECOVER free,
 * so one freed page does not end an episode the next batch starts again. The probe never waits on
 * another process's lock (busy_timeout 0 for its BEGIN): busy is inconclusive, the episode goes on.
 */
export function createStorageHealth(opts: StorageHealthOptions): StorageHealth {
  const { db, log } = opts;
  const now = opts.now ?? Date.now;
  const interval = opts.probeIntervalMs ?? PROBE_INTERVAL_MS;
  let condition: StorageCondition = 'ok';
  let startedAt = 0;
  let refusedInEpisode = 0;
  let refused = 0;
  let lastProbe = 0;
  let probing: PeriodicTask | undefined;

  function failed(err: unknown): AppError | undefined {
    let e = err instanceof AppError ? err : storageFailure(err);
    if (!e || (e.code !== 'storage_full' && e.code !== 'storage_unavailable')) return undefined;
    // Only on a failure: one statfs.
    if (e.code === 'storage_unavailable' && !(err instanceof AppError) && !enoughSpace())
      e = storageFailure({ code: 'SQLITE_FULL' })!;
    const code: Exclude<StorageCondition, 'ok'> =
      e.code === 'storage_full' ? 'storage_full' : 'storage_unavailable';
    refused++;
    refusedInEpisode++;
    if (condition === 'ok') {
      condition = code;
      startedAt = now();
      lastProbe = startedAt;
      refusedInEpisode = 1;
      const raw = err as { code?: unknown; message?: unknown };
      log.warn('storage not writable; writes answer ' + e.code + ' until it is', {
        code: e.code,
        ...(typeof raw.code === 'string' ? { cause: raw.code } : {}),
        error: String(raw.message ?? err).slice(0, 300),
      });
      // probe() catches everything itself.
      probing = startPeriodic({ intervalMs: interval, run: probe, onError: () => {} });
    } else if (code === 'storage_full' && condition !== 'storage_full') {
      // A full disk is the more precise diagnosis (an I/O error may have been its first sign).
      condition = 'storage_full';
    }
    return e;
  }

  function checkSpace(): void {
    if (condition === 'ok' && !enoughSpace()) {
      failed(
        Object.assign(
          new Error(
            `the disk holding ${opts.dir} has less than ${FREE_BYTES_TO_RECOVER} bytes free`,
          ),
          { code: 'ENOSPC' },
        ),
      );
    }
  }

  function enoughSpace(): boolean {
    if (opts.localDisk === false) return true;
    try {
      const s = fs.statfsSync(opts.dir);
      return s.bavail * s.bsize >= FREE_BYTES_TO_RECOVER;
    } catch {
      return true; // cannot tell: the commit decides
    }
  }

  function probe(): void {
    if (condition === 'ok') return;
    lastProbe = now();
    if (condition === 'storage_full' && !enoughSpace()) return;
    if (opts.probeWrite) {
      try {
        opts.probeWrite();
      } catch {
        return; // still failing: the episode goes on
      }
      return recovered();
    }
    if (!db || db.inTransaction || !db.open) return;
    let busyTimeout = 5000;
    let ok = false;
    try {
      busyTimeout = db.pragma('busy_timeout', { simple: true }) as number;
      db.pragma('busy_timeout = 0');
      db.exec('BEGIN IMMEDIATE');
      db.prepare(
        "INSERT INTO server_state (key, value) VALUES ('storage_probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(String(lastProbe));
      db.exec('COMMIT');
      ok = true;
    } catch (err) {
      // A full disk seen under an I/O episode (or the reverse) refines the diagnosis.
      const e = storageFailure(err);
      if (e?.code === 'storage_full') condition = 'storage_full';
    }
    // Runs from a timer: nothing may escape (a failing ROLLBACK on a failing disk included).
    try {
      if (db.inTransaction) db.exec('ROLLBACK');
    } catch {
      /* the next probe tries again */
    }
    try {
      db.pragma(`busy_timeout = ${busyTimeout}`);
    } catch {
      /* a connection that cannot take a pragma is closing */
    }
    if (ok) recovered();
  }

  function recovered(): void {
    const was = condition;
    condition = 'ok';
    void probing?.stop();
    probing = undefined;
    log.info('storage writable again', {
      code: was,
      seconds: Math.round((now() - startedAt) / 100) / 10,
      refused_writes: refusedInEpisode,
    });
    opts.onRecovered?.();
  }

  return {
    failed,
    checkSpace,
    check() {
      if (condition !== 'ok' && now() - lastProbe >= Math.min(interval, 250)) probe();
      return condition;
    },
    condition: () => condition,
    failedWrites: () => refused,
    close() {
      void probing?.stop();
      probing = undefined;
    },
  };
}

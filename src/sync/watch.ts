/**
 * Folder sync: polls D/inbox for `*.bpsync`, imports each once it has stopped changing and is
 * whole, and moves it to D/processed or to D/rejected beside a `.error.json` that says why. This
 * module is the poll loop and what it remembers per file; the steps on one file (inspect, move,
 * report) are watch-files.ts.
 *
 * Polling, not fs.watch: change events are unreliable on USB sticks and network mounts, and a
 * file still being copied must not be read. A file is taken only when its size and mtime have not
 * changed for `stablePolls` consecutive looks, and, when its own structure says it is incomplete
 * (no full manifest line yet, or a payload shorter than the manifest's `payload.len`), only after it
 * has stayed unchanged for `quietMs` (10 minutes): a copy that pauses must never be refused for good.
 *
 * Nothing the file system does here may end or stall the server (docs/design.md "Process, files and
 * resources"): every call is async, each poll stats a bounded number of entries and yields between
 * files, every error is caught, and each problem is logged once per file, not once per poll. A file
 * that was imported or refused but cannot be moved is remembered by name, size and mtime: it is not
 * imported again, only its move is tried again now and then.
 */

import { isUtf8 } from 'node:buffer';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { AppError, isAppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ImportResult } from './import.ts';
import { startPeriodic } from '../periodic.ts';
import {
  errno,
  errText,
  inspect,
  isCandidate,
  moveOut,
  writeReport,
  type Folder,
} from './watch-files.ts';
import { makeDirs } from '../fs-dirs.ts';

export { isCandidate, looksIncomplete, MAX_MOVED_NAME_BYTES, movedName } from './watch-files.ts';

export const SYNC_FOLDERS = ['inbox', 'outbox', 'processed', 'rejected'] as const;

/** Creates D/inbox, D/outbox, D/processed and D/rejected when missing. */
export function ensureSyncFolders(dir: string): void {
  for (const f of SYNC_FOLDERS) makeDirs(join(dir, f));
}

export interface FolderSyncOptions {
  dir: string;
  /** Imports one file (the sync service's importFile with an actor). */
  importFile: (file: string, name: string) => Promise<ImportResult>;
  log: Logger;
  /** The wall clock (epoch ms), for `.error.json` times, retry delays and the quiet period. */
  now: () => number;
  intervalMs?: number;
  stablePolls?: number;
  /** After a failure that is not a refusal (a busy or broken database), or a move that failed, try again after this long. */
  retryMs?: number;
  /** How long a bundle that is structurally incomplete must stay unchanged before it is refused as truncated (default 10 minutes). */
  quietMs?: number;
  /** Inbox entries stat'ed per poll (default 2,000): a flood of files is looked at in turns, so a poll stays short. */
  maxStatsPerPoll?: number;
}

export interface FolderSync {
  /** Runs one poll now (tests); resolves when it is done, never rejects. */
  poll(): Promise<void>;
  /** Stops polling; resolves once the file in progress has been dealt with. */
  stop(): Promise<void>;
}

/** What a file was found to be, waiting to be moved (the move failed once). */
interface Outcome {
  folder: Folder;
  /** The refusal to write beside it in rejected/. */
  report?: Record<string, unknown>;
  /** The log line to write once the move succeeds (imported files). */
  done?: Record<string, unknown>;
  nextMoveAt: number;
}

interface Seen {
  size: number;
  mtimeMs: number;
  /** Consecutive looks that found size and mtime unchanged. */
  stable: number;
  /** When (now()) this size and mtime were first seen: the start of the quiet period. */
  since: number;
  retryAt?: number;
  /** Found structurally incomplete at this size and mtime. */
  incomplete?: boolean;
  outcome?: Outcome;
}

const STAT_BATCH = 64;

/** Starts the poll loop (the first poll runs after one interval). Never throws for the folder's state. */
export function startFolderSync(o: FolderSyncOptions): FolderSync {
  const interval = o.intervalMs ?? 1000;
  const stablePolls = o.stablePolls ?? 2;
  const retryMs = o.retryMs ?? 60_000;
  const quietMs = o.quietMs ?? 600_000;
  const maxStats = o.maxStatsPerPoll ?? 2000;
  const inbox = join(o.dir, 'inbox');
  try {
    ensureSyncFolders(o.dir);
  } catch (err) {
    // Reported by the first poll (inbox) or the first move (processed/, rejected/); the server runs on.
    o.log.error('cannot create the sync folders', {
      dir: o.dir,
      code: errno(err),
      error: errText(err),
    });
  }
  const seen = new Map<string, Seen>();
  /** The last problem logged per inbox name, so each is logged once, not once per poll. */
  const problems = new Map<string, string>();
  let inboxProblem: string | undefined;
  /** Names (hex) of inbox files whose names are not UTF-8, said once each. */
  const undecodable = new Set<string>();
  let cursor = 0;
  /** Aborted by stop(): a poll in progress ends after the file in hand. */
  let stopping: AbortSignal | undefined;

  /** Logs a problem with one file unless the same problem was logged for it already. */
  function problem(
    name: string,
    sig: string,
    level: 'warn' | 'error' | 'info',
    msg: string,
    fields: Record<string, unknown> = {},
  ): void {
    if (problems.get(name) === sig) return;
    problems.set(name, sig);
    o.log[level](msg, { file: name, ...fields });
  }

  /** Moves a file whose fate is known; on failure remembers it (never imported again) and logs once. */
  async function finish(
    name: string,
    entry: Seen,
    outcome: Omit<Outcome, 'nextMoveAt'>,
  ): Promise<void> {
    let target: string;
    try {
      target = await moveOut(o.dir, name, outcome.folder, o.now());
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') {
        // Taken away by someone else after it was read: the import stands.
        seen.delete(name);
        problems.delete(name);
        if (outcome.done)
          o.log.info('sync bundle imported', { file: name, ...outcome.done, moved_to: null });
        else
          o.log.warn('sync bundle rejected', {
            file: name,
            rule: outcome.report?.rule,
            message: outcome.report?.message,
            moved_to: null,
          });
        return;
      }
      entry.outcome = { ...outcome, nextMoveAt: o.now() + retryMs };
      problem(
        name,
        `move:${outcome.folder}:${code ?? errText(err)}`,
        'error',
        `sync bundle could not be moved to ${outcome.folder}/; it stays in the inbox and will not be imported again`,
        {
          ...(outcome.done ?? { rule: outcome.report?.rule }),
          code,
          error: errText(err),
          retry_in_s: retryMs / 1000,
        },
      );
      return;
    }
    seen.delete(name);
    problems.delete(name);
    const movedTo = target.slice(o.dir.length + 1);
    if (outcome.folder === 'processed') {
      o.log.info('sync bundle imported', { file: name, ...outcome.done, moved_to: movedTo });
    } else {
      await writeReport(o.log, name, target, outcome.report ?? {});
      o.log.warn('sync bundle rejected', {
        file: name,
        rule: outcome.report?.rule,
        message: outcome.report?.message,
        moved_to: movedTo,
      });
    }
  }

  async function take(name: string, entry: Seen): Promise<void> {
    if (entry.outcome) {
      if (o.now() < entry.outcome.nextMoveAt) return;
      const { nextMoveAt: _, ...outcome } = entry.outcome;
      entry.outcome = undefined;
      await finish(name, entry, outcome);
      return;
    }
    if (entry.retryAt !== undefined && o.now() < entry.retryAt) return;
    if (entry.incomplete && o.now() - entry.since < quietMs) return;
    let look;
    try {
      look = await inspect(inbox, name);
    } catch (err) {
      problem(
        name,
        `open:${errno(err) ?? errText(err)}`,
        'error',
        'sync bundle cannot be read; left in the inbox',
        { code: errno(err), error: errText(err) },
      );
      entry.retryAt = o.now() + retryMs;
      return;
    }
    if (look.kind === 'gone') {
      seen.delete(name);
      return;
    }
    if (look.kind === 'odd') {
      problem(name, 'odd', 'warn', 'sync inbox entry is not a regular file; left alone');
      entry.retryAt = o.now() + retryMs;
      return;
    }
    if (look.size !== entry.size || look.mtimeMs !== entry.mtimeMs) {
      // Changed since it was stat'ed: still being written.
      seen.set(name, { size: look.size!, mtimeMs: look.mtimeMs!, stable: 0, since: o.now() });
      return;
    }
    if (look.incomplete !== undefined) {
      if (o.now() - entry.since < quietMs) {
        entry.incomplete = true;
        problem(
          name,
          'incomplete',
          'info',
          'sync bundle is incomplete; waiting for the rest of it',
          { reason: look.incomplete, size: look.size, rejected_if_unchanged_for_s: quietMs / 1000 },
        );
        return;
      }
      o.log.warn('sync bundle stayed incomplete; importing it to refuse it as truncated', {
        file: name,
        reason: look.incomplete,
        unchanged_for_s: Math.round((o.now() - entry.since) / 1000),
      });
    }
    let r: ImportResult;
    try {
      r = await o.importFile(join(inbox, name), name);
    } catch (err) {
      if (isAppError(err) && err.code === 'bundle_rejected') {
        const report = {
          code: err.code,
          message: err.message,
          rule: err.details.rule ?? null,
          at: new Date(o.now()).toISOString(),
          file: name,
          details: err.details,
        };
        await finish(name, entry, { folder: 'rejected', report });
      } else if (errno(err) === 'ENOENT') {
        seen.delete(name);
      } else {
        entry.retryAt = o.now() + retryMs;
        const e =
          err instanceof AppError
            ? { code: err.code, message: err.message }
            : { code: errno(err), error: errText(err) };
        problem(
          name,
          `import:${JSON.stringify(e)}`,
          'error',
          'sync bundle could not be imported; will try again',
          { retry_in_s: retryMs / 1000, ...e },
        );
      }
      return;
    }
    const done = {
      seq: r.seq,
      status: r.status,
      added: r.added,
      changed: r.changed,
      revoked: r.revoked,
      unchanged: r.unchanged,
      suspended: r.suspended,
    };
    await finish(name, entry, { folder: 'processed', done });
  }

  /** Stats names (a batch at a time, in parallel) and updates what is known of each. */
  async function look(names: string[]): Promise<void> {
    const now = o.now();
    for (let i = 0; i < names.length && !stopping?.aborted; i += STAT_BATCH) {
      const batch = names.slice(i, i + STAT_BATCH);
      const stats = await Promise.all(
        batch.map((n) => lstat(join(inbox, n)).catch((err: unknown) => err as Error)),
      );
      for (let j = 0; j < batch.length; j++) {
        const name = batch[j]!;
        const st = stats[j]!;
        if (st instanceof Error) {
          seen.delete(name);
          if (errno(st) !== 'ENOENT')
            problem(
              name,
              `stat:${errno(st) ?? errText(st)}`,
              'error',
              'sync inbox entry cannot be examined; left alone',
              { code: errno(st), error: errText(st) },
            );
          continue;
        }
        if (!st.isFile()) {
          seen.delete(name);
          problem(name, 'odd', 'warn', 'sync inbox entry is not a regular file; left alone');
          continue;
        }
        const prev = seen.get(name);
        if (!prev || prev.size !== st.size || prev.mtimeMs !== st.mtimeMs) {
          // A new or changed file: whatever was known of its former self no longer holds.
          seen.set(name, { size: st.size, mtimeMs: st.mtimeMs, stable: 0, since: now });
          if (prev && problems.get(name) !== 'incomplete') problems.delete(name);
        } else prev.stable++;
      }
    }
  }

  async function pollOnce(): Promise<void> {
    let all: string[];
    try {
      all = namesOf(await readdir(inbox, { encoding: 'buffer' }));
    } catch (err) {
      const sig = errno(err) ?? errText(err);
      if (inboxProblem !== sig) {
        inboxProblem = sig;
        o.log.error('cannot read the sync inbox; will keep trying', {
          dir: inbox,
          code: errno(err),
          error: errText(err),
        });
      }
      return;
    }
    if (inboxProblem !== undefined) {
      inboxProblem = undefined;
      o.log.info('the sync inbox can be read again', { dir: inbox });
    }
    // A big listing costs a few ms per step (20,000 names: ~5 ms to sort): requests go in between.
    await yieldTurn();
    const names = all.filter(isCandidate).sort();
    await yieldTurn();
    const present = new Set(names);
    for (const name of seen.keys()) if (!present.has(name)) seen.delete(name);
    for (const name of problems.keys()) if (!present.has(name)) problems.delete(name);
    await yieldTurn();
    // A flood of files is looked at in turns, a bounded slice per poll.
    if (cursor >= names.length) cursor = 0;
    const slice = names.slice(cursor, cursor + maxStats);
    cursor += slice.length;
    await look(slice);
    for (const name of slice) {
      if (stopping?.aborted) return;
      const entry = seen.get(name);
      if (!entry || entry.stable < stablePolls) continue;
      await take(name, entry);
      // One file at a time, and requests go first in between.
      await yieldTurn();
    }
  }

  /**
   * The listing as names. A name that is not UTF-8 (a stick written on another system) cannot be
   * opened through a JS string (decoding would replace its bytes): it is said once, and left alone.
   */
  function namesOf(raw: Buffer[]): string[] {
    const out: string[] = [];
    for (const b of raw) {
      if (isUtf8(b)) {
        out.push(b.toString('utf8'));
        continue;
      }
      const hex = b.toString('hex');
      if (!undecodable.has(hex) && b.toString('latin1').endsWith('.bpsync')) {
        undecodable.add(hex);
        o.log.warn(
          'a file in the sync inbox has a name that is not UTF-8; rename it to import it',
          { file_hex: hex.slice(0, 512) },
        );
      }
    }
    return out;
  }

  // One poll at a time; whatever a poll missed, the loop goes on: nothing here may end the server.
  const loop = startPeriodic({
    intervalMs: interval,
    run: (signal) => {
      stopping = signal;
      return pollOnce();
    },
    onError: (err) =>
      o.log.error('sync inbox poll failed; will try again', {
        code: errno(err),
        error: errText(err),
      }),
  });
  o.log.info('watching sync folder', { inbox, interval_ms: interval });
  return {
    poll: loop.runNow,
    stop: loop.stop,
  };
}

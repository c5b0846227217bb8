/**
 * Folder sync: polls D/inbox for `*.bpsync`, imports each once it has stopped changing and is
 * whole, and moves it to D/processed or to D/rejected beside a `.error.json` that says why.
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
import { constants, mkdirSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import {
  copyFile,
  lstat,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { AppError, isAppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { LIMITS, MAGIC } from './format.ts';
import type { ImportResult } from './import.ts';
import { peekClaims } from './manifest.ts';
import { startPeriodic } from '../periodic.ts';

export const SYNC_FOLDERS = ['inbox', 'outbox', 'processed', 'rejected'] as const;

/** Creates D/inbox, D/outbox, D/processed and D/rejected when missing. */
export function ensureSyncFolders(dir: string): void {
  for (const f of SYNC_FOLDERS) mkdirSync(join(dir, f), { recursive: true });
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

type Folder = 'processed' | 'rejected';

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

/** Is this inbox entry a bundle to consider? Dotfiles and `*.part` are copies in progress. */
export function isCandidate(name: string): boolean {
  return name.endsWith('.bpsync') && !name.startsWith('.') && !name.endsWith('.part');
}

/**
 * Longest name (UTF-8 bytes) given to a file moved to processed/ or rejected/: 255 (NAME_MAX on
 * ext4, xfs, btrfs, tmpfs) less the 15 bytes of `.error.json.tmp`, so the report beside it fits too.
 */
export const MAX_MOVED_NAME_BYTES = 240;
const EXT = '.bpsync';

/**
 * The name a file gets in processed/ or rejected/: its own when free; on a collision a time stamp
 * (then a counter) before `.bpsync`; too long, a prefix of it plus a hash of the whole name;
 * `short` (the file system refused even that: ENAMETOOLONG), the hash alone.
 */
export function movedName(
  name: string,
  o: { stamp?: string; n?: number; short?: boolean } = {},
): string {
  const base = name.endsWith(EXT) ? name.slice(0, -EXT.length) : name;
  const hash = createHash('sha256').update(name).digest('hex');
  const tail = `${o.stamp ? `.${o.stamp}` : ''}${o.n ? `-${o.n}` : ''}${EXT}`;
  if (o.short) return `${hash.slice(0, 16)}${tail}`;
  const whole = `${base}${tail}`;
  if (Buffer.byteLength(whole) <= MAX_MOVED_NAME_BYTES) return whole;
  const mark = `~${hash.slice(0, 12)}`;
  return `${utf8Prefix(base, MAX_MOVED_NAME_BYTES - Buffer.byteLength(mark + tail))}${mark}${tail}`;
}

/** The longest prefix of s within `bytes` UTF-8 bytes, never cutting a character. */
function utf8Prefix(s: string, bytes: number): string {
  let used = 0;
  let out = '';
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (used + n > bytes) break;
    used += n;
    out += ch;
  }
  return out;
}

/**
 * Does the file's own structure say it is not whole yet: empty, a prefix of the magic line, a
 * manifest line without its LF (under the 64 KiB cap, token characters only), a payload shorter
 * than the manifest's `payload.len`, or zeros from some point to the end where bytes are still to
 * come (a copier that sets the size first and fills it in later, as Windows and
 * `rsync --preallocate` may: then the last byte, `lastByte`, is 0, never the LF a payload ends
 * with)? Anything else (junk, too large, longer than announced) is "complete": the import decides,
 * and refuses it at once. `head` is the file's first bytes (at least the magic and manifest lines
 * when the file has them).
 */
export function looksIncomplete(head: Buffer, size: number, lastByte?: number): string | undefined {
  if (size === 0) return 'the file is empty';
  const zeros =
    'the file holds zeros where its bytes are still to come (its size was set before they were written?)';
  // Zeros from i to the end of the file (as far as head and the last byte show).
  const zerosFrom = (i: number): boolean => {
    for (let k = i; k < head.length; k++) if (head[k] !== 0) return false;
    return head.length >= size || lastByte === 0;
  };
  const magic = Buffer.from(MAGIC, 'ascii');
  for (let i = 0; i < Math.min(head.length, magic.length); i++) {
    if (head[i] !== magic[i]) return zerosFrom(i) ? zeros : undefined;
  }
  if (head.length < magic.length) return 'the file ends inside the magic line';
  const lf = head.indexOf(0x0a, magic.length);
  const lineEnd = lf < 0 ? head.length : lf;
  for (let i = magic.length; i < lineEnd; i++) {
    if (head[i]! < 0x21 || head[i]! > 0x7e)
      return head[i] === 0 && zerosFrom(i) ? zeros : undefined;
  }
  if (lf < 0)
    return head.length - magic.length > LIMITS.manifestBytes
      ? undefined
      : 'the file ends inside the manifest line';
  const payload = peekClaims(head.subarray(magic.length, lf).toString('ascii'))?.payload as
    { len?: unknown } | undefined;
  const len = payload?.len;
  if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0) return undefined;
  const have = size - (lf + 1);
  if (have < len) return `the payload has ${have} of the ${len} bytes its manifest announces`;
  if (have === len && len > 0 && lastByte === 0) return zeros;
  return undefined;
}

const errno = (err: unknown): string | undefined =>
  (err as NodeJS.ErrnoException | undefined)?.code;
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
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

  const stampNow = () => new Date(o.now()).toISOString().replace(/[:.]/g, '-');

  /**
   * Moves inbox/<name> into a folder under a free name that fits, across file systems if need be.
   * Resolves to the new path; rejects with the errno error when it cannot (the file stays put).
   */
  async function moveOut(name: string, folder: Folder): Promise<string> {
    const src = join(inbox, name);
    const dir = join(o.dir, folder);
    let short = false;
    let madeDir = false;
    const stamp = stampNow();
    for (let attempt = 0; attempt < 50;) {
      const target = join(
        dir,
        movedName(name, {
          short,
          stamp: attempt > 0 ? stamp : undefined,
          n: attempt > 1 ? attempt : undefined,
        }),
      );
      try {
        // Never overwrite an earlier record: rename would replace it silently.
        await lstat(target);
        attempt++;
        continue;
      } catch (err) {
        const code = errno(err);
        if (code === 'ENAMETOOLONG' && !short) {
          short = true;
          continue;
        }
        if (code !== 'ENOENT') throw err;
      }
      try {
        await rename(src, target);
        return target;
      } catch (err) {
        const code = errno(err);
        if (code === 'EXDEV') return copyAcross(src, target);
        if (code === 'ENAMETOOLONG' && !short) short = true;
        else if (code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'EISDIR') attempt++;
        else if (
          code === 'ENOENT' &&
          !madeDir &&
          (await lstat(src).then(
            () => true,
            () => false,
          ))
        ) {
          // processed/ or rejected/ removed under us: they are ours to make again.
          madeDir = true;
          await mkdir(dir, { recursive: true });
        } else throw err;
      }
    }
    // The folder holds every name tried (the admin's files, or another process making them).
    throw new AppError('conflict', `no free name in ${folder}/ for ${name}`);
  }

  /** rename across file systems (the inbox on a USB stick): a hidden copy, renamed, then the original removed. */
  async function copyAcross(src: string, target: string): Promise<string> {
    const tmp = join(dirname(target), `.${basename(target)}.part`);
    await rm(tmp, { force: true });
    try {
      await copyFile(src, tmp, constants.COPYFILE_EXCL);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
    try {
      await unlink(src);
    } catch (err) {
      // The original cannot go (a read-only inbox): keep one copy only, the one in the inbox.
      if (errno(err) !== 'ENOENT') {
        await rm(target, { force: true }).catch(() => {});
        throw err;
      }
    }
    return target;
  }

  /** The report beside a refused bundle, written aside and renamed so a reader never sees half of it. */
  async function writeReport(
    name: string,
    target: string,
    report: Record<string, unknown>,
  ): Promise<void> {
    const tmp = `${target}.error.json.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify(report, null, 2)}\n`);
      await rename(tmp, `${target}.error.json`);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      o.log.error('cannot write the report beside a rejected sync bundle', {
        file: name,
        moved_to: target,
        code: errno(err),
        error: errText(err),
      });
    }
  }

  /** Moves a file whose fate is known; on failure remembers it (never imported again) and logs once. */
  async function finish(
    name: string,
    entry: Seen,
    outcome: Omit<Outcome, 'nextMoveAt'>,
  ): Promise<void> {
    let target: string;
    try {
      target = await moveOut(name, outcome.folder);
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
      await writeReport(name, target, outcome.report ?? {});
      o.log.warn('sync bundle rejected', {
        file: name,
        rule: outcome.report?.rule,
        message: outcome.report?.message,
        moved_to: movedTo,
      });
    }
  }

  /** Opens without following links or blocking on a FIFO, and reads the head: is it a whole bundle yet? */
  async function inspect(name: string): Promise<{
    kind: 'gone' | 'odd' | 'ok';
    size?: number;
    mtimeMs?: number;
    incomplete?: string;
  }> {
    let fh;
    try {
      fh = await open(
        join(inbox, name),
        constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW,
      );
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return { kind: 'gone' };
      if (code === 'ELOOP') return { kind: 'odd' };
      throw err;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { kind: 'odd' };
      const want = Math.min(st.size, MAGIC.length + LIMITS.manifestBytes + 1);
      const head = Buffer.alloc(want);
      const { bytesRead } = await fh.read(head, 0, want, 0);
      const last = Buffer.alloc(1);
      const tail = st.size > 0 ? (await fh.read(last, 0, 1, st.size - 1)).bytesRead : 0;
      return {
        kind: 'ok',
        size: st.size,
        mtimeMs: st.mtimeMs,
        incomplete: looksIncomplete(
          head.subarray(0, bytesRead),
          st.size,
          tail === 1 ? last[0] : undefined,
        ),
      };
    } finally {
      await fh.close().catch(() => {});
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
      look = await inspect(name);
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

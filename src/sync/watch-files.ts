/**
 * The per-file steps of the folder sync (watch.ts runs the poll loop): which inbox names are
 * bundles, whether a file's own structure says it is still being copied (looksIncomplete, inspect),
 * and moving a file whose fate is known to processed/ or rejected/ under a free name that fits
 * (moveOut, across file systems too), with the refusal's report beside it (writeReport). Each
 * works on one file; a failure rejects with the errno error (writeReport logs its own), and the
 * loop decides what to log and when to try again (sync-bundles/README.md section 7).
 */
import { constants } from 'node:fs';
import { copyFile, lstat, open, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { LIMITS, MAGIC } from './format.ts';
import { peekClaims } from './manifest.ts';
import { makeDirs } from '../fs-dirs.ts';

/** Where a file whose fate is known goes. */
export type Folder = 'processed' | 'rejected';

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

/** The errno code of a file system error (`ENOENT`, …), if it has one. */
export const errno = (err: unknown): string | undefined =>
  (err as NodeJS.ErrnoException | undefined)?.code;
/** The message of an error, for the log. */
export const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Moves `<syncDir>/inbox/<name>` into `<syncDir>/<folder>` under a free name that fits, across
 * file systems if need be; `now` (epoch ms) stamps the name on a collision. Resolves to the new
 * path; rejects with the errno error when it cannot (the file stays put), or `internal` when 50
 * names are all taken.
 */
export async function moveOut(
  syncDir: string,
  name: string,
  folder: Folder,
  now: number,
): Promise<string> {
  const src = join(syncDir, 'inbox', name);
  const dir = join(syncDir, folder);
  let short = false;
  let madeDir = false;
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
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
        makeDirs(dir);
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

/**
 * The report beside a refused bundle (`<target>.error.json`), written aside and renamed so a reader
 * never sees half of it. A failure is logged, never thrown: the refusal stands without its report.
 */
export async function writeReport(
  log: Logger,
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
    log.error('cannot write the report beside a rejected sync bundle', {
      file: name,
      moved_to: target,
      code: errno(err),
      error: errText(err),
    });
  }
}

/**
 * Opens `<inbox>/<name>` without following links or blocking on a FIFO, and reads the head: is it
 * a whole bundle yet? `gone` (ENOENT), `odd` (a link or not a regular file), else `ok` with its
 * size, mtime and, when looksIncomplete says so, why it is incomplete. Rejects with other errors.
 */
export async function inspect(
  inbox: string,
  name: string,
): Promise<{
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

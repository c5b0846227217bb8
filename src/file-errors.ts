/**
 * A file a command reads or writes that cannot be had (missing, a folder, not allowed, the disk
 * full…), said in words that name the file and what to do, never as Node's raw errno text
 * ("ENOENT: no such file or directory, open '…'"). The CLI's last catch and the commands that know
 * a file's role (the import file, the log file, the TLS certificate) both come here.
 */
import { AppError, type ErrorCode } from './errors.ts';

/** What the errno codes mean for a file a person named, and the error code each becomes. */
const REASONS: Record<string, { code: ErrorCode; reason: string; hint?: string }> = {
  ENOENT: {
    code: 'not_found',
    reason: 'no such file or folder',
    hint: 'check the path; a relative path is taken from the current folder',
  },
  EACCES: {
    code: 'forbidden',
    reason: 'permission denied',
    hint: 'run as a user who may use it, or change its owner or mode',
  },
  EPERM: {
    code: 'forbidden',
    reason: 'operation not permitted',
    hint: 'run as a user who may use it, or change its owner or mode',
  },
  EISDIR: { code: 'invalid_request', reason: 'it is a folder, not a file' },
  ENOTDIR: { code: 'invalid_request', reason: 'a part of the path is a file, not a folder' },
  EEXIST: {
    code: 'conflict',
    reason: 'it exists already, and nothing is overwritten',
    hint: 'give a new name, or move the old file away first',
  },
  ENOTEMPTY: { code: 'conflict', reason: 'the folder is not empty' },
  ENAMETOOLONG: { code: 'invalid_request', reason: 'the path is too long' },
  ELOOP: { code: 'invalid_request', reason: 'too many symbolic links in the path' },
  ENOSPC: { code: 'storage_full', reason: 'the disk is full', hint: 'free some space' },
  EDQUOT: { code: 'storage_full', reason: 'the disk quota is used up', hint: 'free some space' },
  EROFS: { code: 'storage_unavailable', reason: 'the file system is read-only' },
  EIO: { code: 'storage_unavailable', reason: 'an I/O error (a failing disk?)' },
  EMFILE: {
    code: 'storage_unavailable',
    reason: 'too many files are open',
    hint: 'raise the open-files limit (ulimit -n)',
  },
};

/** Node's errno error: `code` (ENOENT…), and `path` when a file was involved. */
function errnoOf(err: unknown): { code: string; path?: string; syscall?: string } | undefined {
  const e = err as NodeJS.ErrnoException | null;
  return e && typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)
    ? {
        code: e.code,
        ...(e.path ? { path: e.path } : {}),
        ...(e.syscall ? { syscall: e.syscall } : {}),
      }
    : undefined;
}

/**
 * The error for a file that could not be used: `cannot read the import file x.json: ENOENT, no
 * such file or folder`, with a hint. `what` names the file's role ("the import file"); `file` is
 * the path as the person gave it. The code: `not_found` (ENOENT), `forbidden` (EACCES, EPERM),
 * `conflict` (EEXIST, ENOTEMPTY), `storage_full` (ENOSPC, EDQUOT), `storage_unavailable` (EROFS,
 * EIO, EMFILE), `invalid_request` otherwise.
 *
 * @returns undefined when `err` is not an errno error (a bug or a parse error: the caller rethrows)
 */
export function fileError(
  err: unknown,
  o: { action: string; what?: string; file?: string },
): AppError | undefined {
  const e = errnoOf(err);
  if (!e) return undefined;
  const file = o.file ?? e.path;
  const subject = [o.what, file].filter(Boolean).join(' ') || 'a file';
  const known = REASONS[e.code];
  return new AppError(
    known?.code ?? 'invalid_request',
    `cannot ${o.action} ${subject}: ${e.code}, ${known?.reason ?? 'the operating system refused'}`,
    { errno: e.code, ...(file ? { file } : {}) },
    known?.hint,
  );
}

/**
 * Runs `fn` (which reads or writes `file`) and turns an errno failure into fileError's answer;
 * anything else is rethrown as it is.
 */
export function withFile<T>(o: { action: string; what: string; file: string }, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fileError(err, o) ?? err;
  }
}

/** The verb for a system call, for an errno error that reaches the CLI's last catch unnamed. */
export function actionOf(err: unknown): string {
  switch (errnoOf(err)?.syscall) {
    case 'mkdir':
      return 'create the folder';
    case 'scandir':
      return 'list';
    case 'rename':
      return 'rename';
    case 'unlink':
    case 'rmdir':
      return 'remove';
    case 'copyfile':
      return 'copy';
    case 'stat':
    case 'lstat':
      return 'find';
    default:
      return 'use';
  }
}

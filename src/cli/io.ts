import { userInfo } from 'node:os';
import { FlagError } from '../flag-errors.ts';
import { AppError, toEnvelope } from '../errors.ts';
import type { Env } from '../config.ts';

/** Where a command writes and what it may read: injected, so tests run commands in process. */
export interface CliIo {
  /** Returns false when the text was not taken (the reader is gone); never throws. */
  stdout: (text: string) => boolean | void;
  /** Returns false when the text was not taken (the reader is gone or too far behind); never throws. */
  stderr: (text: string) => boolean | void;
  env: Env;
  cwd: string;
  /** True when stderr is a terminal (progress lines are only for people). */
  isTTY: boolean;
  /**
   * Resolves at the first SIGTERM or SIGINT; serve waits on it. Reading it is what makes the
   * process catch those signals (other commands keep the default: Ctrl-C ends them).
   */
  stopSignal?: Promise<string>;
  /** Every SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 the process gets from now on (serve). */
  onSignal?: (listener: (signal: NodeJS.Signals) => void) => void;
}

/** A process output stream written without ever throwing, blocking, or growing without bound. */
export interface StreamOutput {
  /** Queues text; false when it was dropped (the stream failed, or `maxQueuedBytes` are waiting). */
  write(text: string): boolean;
  /** True once a write failed (EPIPE: the reader went away; EBADF...): later text is dropped. */
  readonly failed: boolean;
  /** Resolves once everything queued is written or the stream failed; after timeoutMs at the latest. */
  settled(timeoutMs?: number): Promise<void>;
}

/**
 * Wraps process.stdout or process.stderr. Node writes to a pipe asynchronously and queues what
 * the reader has not taken yet, without a bound, and an unhandled EPIPE ends the process: here a
 * failure is caught and remembered, and past `maxQueuedBytes` queued (a reader that stopped
 * reading) text is dropped rather than kept, until the queue is down to half of it: a reader that
 * comes back sees one gap, told once (log.ts), not a gap at every line while it catches up.
 */
export function createStreamOutput(
  stream: NodeJS.WriteStream,
  opts: { maxQueuedBytes?: number } = {},
): StreamOutput {
  const max = opts.maxQueuedBytes ?? Infinity;
  let failed = false;
  let pending = 0;
  let shedding = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
    waiters.clear();
  };
  stream.on('error', () => {
    failed = true;
    wake();
  });
  const done = (err?: Error | null) => {
    pending--;
    if (err) failed = true;
    if (pending === 0 || failed) wake();
  };
  return {
    write(text) {
      if (failed || stream.destroyed) return false;
      const queued = stream.writableLength;
      if (queued > max || (shedding && queued > max / 2)) {
        shedding = true;
        return false;
      }
      shedding = false;
      pending++;
      stream.write(text, done);
      return true;
    },
    get failed() {
      return failed || stream.destroyed;
    },
    settled(timeoutMs = Infinity) {
      if (pending === 0 || failed) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = Number.isFinite(timeoutMs) ? setTimeout(resolve, timeoutMs) : undefined;
        timer?.unref();
        waiters.add(() => {
          if (timer) clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/** Prints a result: the object as JSON with --json, else the human form. */
export function emit(io: CliIo, json: boolean, value: unknown, human: () => string): void {
  io.stdout(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** Prints the HTTP error envelope of a failure on stdout (what --json promises on every failure). */
export function emitEnvelope(io: CliIo, err: AppError): void {
  io.stdout(`${JSON.stringify(toEnvelope(err), null, 2)}\n`);
}

/** Prints a failure: the HTTP error envelope with --json, else `error[code]: message` and a hint. */
export function emitError(io: CliIo, json: boolean, err: AppError): void {
  if (json) emitEnvelope(io, err);
  io.stderr(`error[${err.code}]: ${err.message}\n`);
  if (err.hint) io.stderr(`hint: ${err.hint}\n`);
  // Issues by flag when the command named its flags (flag-errors.ts), else by field.
  const issues = err instanceof FlagError ? err.flagIssues : err.details.issues;
  if (Array.isArray(issues) && issues.length > 1) {
    for (const i of issues.slice(1, 10) as Array<{ path: string; message: string }>)
      io.stderr(`  ${i.path}: ${i.message}\n`);
  }
  const errors = err.details.errors;
  if (Array.isArray(errors)) {
    for (const e of errors.slice(0, 20) as Array<{
      index: number;
      message: string;
      path?: string;
    }>) {
      io.stderr(`  item ${e.index}${e.path ? ` ${e.path}` : ''}: ${e.message}\n`);
    }
  }
}

/** The audit actor for a command run from a shell. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/** A plain table for people: columns padded to the widest cell. */
export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) =>
    columns.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))),
  );
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

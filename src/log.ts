import { closeSync, openSync, writeSync } from 'node:fs';

/** One JSON object a line on stderr. Callers log ids, never tokens, keys or bundle payloads. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Writes out buffered lines now (a buffered logger; a no-op otherwise). */
  flush(): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  /**
   * Where lines go. Returning `false` means the text was not taken (the reader is gone, or too far
   * behind): the logger counts its lines as dropped and says so in the next line that goes out.
   */
  write?: (text: string) => unknown;
  now?: () => number;
  /**
   * Debug and info lines of one turn of the event loop go out in one write instead of one write
   * each (a write per line is a measurable part of a grant: bench/README.md, "Why the code is as
   * it is"). Warnings and errors go out at
   * once, after whatever is queued. The server uses it; call `flush()` before exiting.
   */
  buffered?: boolean;
}

/** Lines queued past this size are written at once, whatever the turn. */
const MAX_BUFFERED = 64 * 1024;

/** A logger that counts the lines its writer refused. */
export interface CountingLogger extends Logger {
  /** Lines not written since the start (the writer refused them). */
  dropped(): number;
}

export function createLogger(opts: LoggerOptions = {}): CountingLogger {
  const min = ORDER[opts.level ?? 'info'];
  const write = opts.write ?? ((text: string) => void process.stderr.write(text));
  const now = opts.now ?? Date.now;
  let pending = '';
  let scheduled = false;
  let dropped = 0;
  // Dropped since the last line that went out: reported once, in front of the next write.
  let unreported = 0;
  const flush = () => {
    scheduled = false;
    if (pending === '') return;
    let text = pending;
    pending = '';
    if (unreported > 0) {
      text = `${JSON.stringify({ ts: new Date(now()).toISOString(), level: 'warn', msg: 'log lines dropped: the log reader was gone or too slow', count: unreported, total: dropped })}\n${text}`;
    }
    if (write(text) === false) {
      const lines = countLines(text) - (unreported > 0 ? 1 : 0);
      dropped += lines;
      unreported += lines;
    } else {
      unreported = 0;
    }
  };
  const emit = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const line = `${JSON.stringify({ ts: new Date(now()).toISOString(), level, msg, ...fields })}\n`;
    pending += line;
    if (!opts.buffered) return flush();
    if (ORDER[level] >= ORDER.warn || pending.length >= MAX_BUFFERED) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    flush,
    dropped: () => dropped,
  };
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, flush() {} };

/** A log file the server appends to; `reopen()` (on SIGHUP) starts on whatever now has its name. */
export interface LogFile {
  readonly path: string;
  /** Appends; false (the text is dropped) when the write fails, e.g. a full disk. Never throws. */
  write(text: string): boolean;
  /** Opens the path again (logrotate moved the old file away); on failure keeps the old file and throws. */
  reopen(): void;
  close(): void;
}

/**
 * Opens (creating it 0600: request lines name token ids and addresses) a log file for appending.
 * Writes are synchronous: a regular file does not stall like a pipe whose reader stopped reading,
 * and the logger batches a turn's lines into one write. Throws the open error (ENOENT, EACCES...).
 */
export function openLogFile(path: string): LogFile {
  // The mode applies when the file is created (a umask only removes bits); an existing file keeps
  // the mode its admin gave it.
  const open = () => openSync(path, 'a', 0o600);
  let fd: number | undefined = open();
  return {
    path,
    write(text) {
      if (fd === undefined) return false;
      try {
        writeSync(fd, text);
        return true;
      } catch {
        return false;
      }
    },
    reopen() {
      const next = open();
      if (fd !== undefined) closeSync(fd);
      fd = next;
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

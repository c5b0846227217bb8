import { userInfo } from 'node:os';
import { AppError, toEnvelope } from '../errors.ts';
import type { Env } from '../config.ts';

/** Where a command writes and what it may read: injected, so tests run commands in process. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Env;
  cwd: string;
  /** True when stderr is a terminal (progress lines are only for people). */
  isTTY: boolean;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT); serve waits on it. */
  stopSignal?: Promise<string>;
}

/** Prints a result: the object as JSON with --json, else the human form. */
export function emit(io: CliIo, json: boolean, value: unknown, human: () => string): void {
  io.stdout(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** Prints a failure: the HTTP error envelope with --json, else `error[code]: message` and a hint. */
export function emitError(io: CliIo, json: boolean, err: AppError): void {
  if (json) io.stdout(`${JSON.stringify(toEnvelope(err), null, 2)}\n`);
  io.stderr(`error[${err.code}]: ${err.message}\n`);
  if (err.hint) io.stderr(`hint: ${err.hint}\n`);
  const issues = err.details.issues;
  if (Array.isArray(issues) && issues.length > 1) {
    for (const i of issues.slice(1, 10) as Array<{ path: string; message: string }>) io.stderr(`  ${i.path}: ${i.message}\n`);
  }
  const errors = err.details.errors;
  if (Array.isArray(errors)) {
    for (const e of errors.slice(0, 20) as Array<{ index: number; message: string; path?: string }>) {
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
  const cells = rows.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

/** What the main thread (driver.ts) and the connection thread (worker.ts) say to each other. */
import type { MessagePort } from 'node:worker_threads';

export interface WorkerData {
  url: string;
  /** The sync answers' port (read with receiveMessageOnPort) and its wake-up counter. */
  syncPort: MessagePort;
  asyncPort: MessagePort;
  wake: SharedArrayBuffer;
  connectTimeoutMs: number;
  /** Per statement, server side (statement_timeout); 0 for none. */
  statementTimeoutMs: number;
  /** A statement unanswered this long has its connection cut (ms). */
  requestTimeoutMs: number;
}

export interface Request {
  id: number;
  conn: 0 | 1;
  sql: string;
  params?: unknown[];
  /** A prepared statement's name: the server parses and plans it once per connection. */
  name?: string;
  /** sync: answer on syncPort and wake the main thread; async: answer on asyncPort; none: no answer. */
  reply: 'sync' | 'async' | 'none';
  /** Several statements in one text, no parameters (the simple protocol). */
  multi?: boolean;
}

export interface WireError {
  message: string;
  code?: string;
  detail?: string;
}

export type Reply =
  | { id: number; ok: true; rows: Record<string, unknown>[]; count: number }
  | { id: number; ok: false; error: WireError };

/** Our code for "PostgreSQL cannot be reached" (connection refused, lost, timed out). */
export const UNAVAILABLE = 'BPLS_PG_UNAVAILABLE';

/**
 * What a statement does to its connection's transaction, read from its first words: the one
 * reading both threads use (the main thread's inTransaction, the worker's per-connection state).
 */
export const TX_START = /^\s*(BEGIN|START)\b/i;
export const ROLLBACK_TO = /^\s*ROLLBACK\s+TO\b/i;
/** Ends the transaction (COMMIT, END, ROLLBACK, ABORT; a ROLLBACK TO a savepoint does not). */
export const endsTransaction = (sql: string): boolean =>
  /^\s*(COMMIT|ROLLBACK|END|ABORT)\b/i.test(sql) && !ROLLBACK_TO.test(sql);
export const COMMIT = /^\s*(COMMIT|END)\b/i;
/** A plain read: outside a transaction it may go to the reader connection. */
export const READ = /^\s*(SELECT|WITH)\b/i;

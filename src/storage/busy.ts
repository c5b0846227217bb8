import type { Db } from './db.ts';

/**
 * How long a write waits, off the event loop, for another process to release the database's write
 * lock before it is answered `503 busy` (with Retry-After). Long enough to ride out a bulk import's
 * apply or a backup; short enough that a client hears back in seconds.
 */
export const BUSY_RETRY_DEADLINE_MS = 3000;
/** The longest pause between two tries for the lock: a freed lock is taken within this. */
const MAX_RETRY_DELAY_MS = 2;

/** True for SQLITE_BUSY and its extended codes: another connection holds a lock; trying later may work. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/** The pause before try number `attempt` (1, 2, …): 1, then 2 ms (a failed try costs microseconds). */
export function retryDelay(attempt: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, 2 ** Math.max(0, attempt - 1));
}

/**
 * Runs `attempt` with the connection's busy handler off: a retry polls the lock and never sleeps
 * on the event loop; the pauses between polls are timers. The connection's timeout comes back after.
 */
export function withoutBusyWait<T>(db: Db, attempt: () => T): T {
  const saved = db.pragma('busy_timeout', { simple: true }) as number;
  db.pragma('busy_timeout = 0');
  try {
    return attempt();
  } finally {
    db.pragma(`busy_timeout = ${saved}`);
  }
}

/**
 * Calls `attempt` until it does not throw SQLITE_BUSY, pausing on timers between tries (the event
 * loop free meanwhile), for up to `deadlineMs`; then throws the last busy error (storageFailure maps
 * it to `busy` 503). The first try uses the connection's own short busy timeout, later ones none.
 * `attempt` must change nothing when it throws busy (a BEGIN IMMEDIATE that did not start).
 */
export async function retryWhileBusy<T>(
  db: Db,
  attempt: () => T,
  deadlineMs: number = BUSY_RETRY_DEADLINE_MS,
): Promise<T> {
  const start = Date.now();
  try {
    return attempt();
  } catch (err) {
    if (!isBusy(err)) throw err;
    let last: unknown = err;
    for (let n = 1; Date.now() - start < deadlineMs; n++) {
      await new Promise((r) => setTimeout(r, retryDelay(n)));
      try {
        return withoutBusyWait(db, attempt);
      } catch (e) {
        if (!isBusy(e)) throw e;
        last = e;
      }
    }
    throw last;
  }
}

/**
 * The lease queue (README "Floating extras", queueing): requests with `wait_seconds` that found
 * every seat of a concurrent entitlement in use wait here, first come first served, in memory.
 * No polling: a waiter is tried again only when a seat may have freed (a release, a revocation,
 * the sweep, or a timer set for the entitlement's next lease expiry). Bounded: at most
 * `perEntitlement` waiters on one entitlement and `total` in all.
 *
 * This module holds the order and the bounds only; the lease service (leases.ts) decides when to
 * try the head and what a try does.
 */

/** One waiting request. `settle` is called once: by the service (a win or a refusal) or on leave. */
export interface Waiter<T> {
  readonly entitlementId: string;
  readonly payload: T;
  /** Still queued (false once served, timed out or gone). */
  queued: boolean;
}

interface Line<T> {
  waiters: Waiter<T>[];
  /** Index of the head in `waiters` (shifted lazily: O(1) dequeue). */
  head: number;
}

export interface QueueLimits {
  /** Waiters on one entitlement at most. */
  perEntitlement: number;
  /** Waiters on the whole server at most. */
  total: number;
}

/** The longest a lease request may wait for a seat (wait_seconds). */
export const MAX_WAIT_SECONDS = 300;

/** The default bounds: a waiter holds a socket and a few hundred bytes. */
export const DEFAULT_QUEUE_LIMITS: QueueLimits = { perEntitlement: 256, total: 4096 };

/** Creates the queue. Every operation is O(1) but `remove` of a waiter not at the head (O(n)). */
export function createLeaseQueue<T>(limits: QueueLimits = DEFAULT_QUEUE_LIMITS) {
  const lines = new Map<string, Line<T>>();
  let size = 0;

  function live(line: Line<T>): number {
    return line.waiters.length - line.head;
  }

  return {
    /** Waiters in all. */
    get size(): number {
      return size;
    },

    /** Waiters on one entitlement. */
    depth(entitlementId: string): number {
      const line = lines.get(entitlementId);
      return line ? live(line) : 0;
    },

    /** Is anyone waiting for this entitlement (so a newcomer may not take a freed seat)? */
    has(entitlementId: string): boolean {
      return lines.has(entitlementId);
    },

    /** The entitlements with waiters. */
    entitlements(): IterableIterator<string> {
      return lines.keys();
    },

    /** Every waiter, line by line in arrival order (a copy: the caller may remove as it goes). */
    all(): Waiter<T>[] {
      const out: Waiter<T>[] = [];
      for (const line of lines.values()) out.push(...line.waiters.slice(line.head));
      return out;
    },

    /** Adds a waiter at the tail; null when a bound is reached (the caller refuses the request). */
    push(entitlementId: string, payload: T): Waiter<T> | null {
      let line = lines.get(entitlementId);
      if (size >= limits.total || (line !== undefined && live(line) >= limits.perEntitlement))
        return null;
      if (line === undefined) {
        line = { waiters: [], head: 0 };
        lines.set(entitlementId, line);
      }
      const w: Waiter<T> = { entitlementId, payload, queued: true };
      line.waiters.push(w);
      size++;
      return w;
    },

    /** The waiter first in line on the entitlement, if any. */
    head(entitlementId: string): Waiter<T> | undefined {
      const line = lines.get(entitlementId);
      return line?.waiters[line.head];
    },

    /** Takes a waiter out of its line (served, timed out, or its client left). Idempotent. */
    remove(w: Waiter<T>): void {
      if (!w.queued) return;
      w.queued = false;
      size--;
      const line = lines.get(w.entitlementId)!;
      if (line.waiters[line.head] === w) line.head++;
      else line.waiters.splice(line.waiters.indexOf(w), 1);
      if (live(line) === 0) lines.delete(w.entitlementId);
      else if (line.head > 64 && line.head * 2 > line.waiters.length) {
        line.waiters = line.waiters.slice(line.head);
        line.head = 0;
      }
    },
  };
}

export type LeaseQueue<T> = ReturnType<typeof createLeaseQueue<T>>;

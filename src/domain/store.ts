/**
 * The store seam: what the domain reads and writes, and how its writes are grouped. The domain
 * depends on these interfaces only; src/storage/store.ts implements them on SQLite (and adds what
 * only the process needs: the connection, backups, checkpoints). A repository method is one read
 * or one write, with no decision in it: every rule (who may lease, when a seat is free, what a
 * status is) lives in the domain, so a second store implements reads and writes, never rules.
 *
 * Times are epoch milliseconds throughout. Subject lookups take the canonical key
 * (src/subjects.ts), never the id as spelt.
 */
import type {
  ApiToken,
  DayStats,
  Entitlement,
  EntitlementCounters,
  Installation,
  Lease,
  LeaseEvent,
  LeaseState,
  ListedLease,
  Seat,
  StatusBounds,
  StoredInstallation,
  WindowStats,
} from './types.ts';
import type { AuditLog } from './audit.ts';
import type { SyncStore } from './sync-store.ts';

/** An entitlement as stored: with its insertion order, the list cursor. */
export type StoredEntitlement = Entitlement & { seq: number };

/** An API token as stored: with the keyed hash of its secret (never the secret). */
export type StoredApiToken = ApiToken & { hash: Buffer };

export interface EntitlementFilter {
  /** Ids that start with this, compared byte for byte (ids are case-sensitive). */
  idPrefix?: string | undefined;
  tenantId?: string | undefined;
  productId?: string | undefined;
  /** A derived status, as bounds on the stored fields (statusBounds in types.ts). */
  status?: StatusBounds | undefined;
  afterSeq?: number | undefined;
  limit: number;
}

export interface LeaseFilter {
  entitlementId?: string | undefined;
  tenantId?: string | undefined;
  productId?: string | undefined;
  subjectType?: string | undefined;
  /** A subject's canonical key. */
  subjectKey?: string | undefined;
  afterSeq: number;
  limit: number;
  /** Only leases in force at this time (active, not expired). */
  now: number;
}

/**
 * Entitlements. `graceDays` is passed beside the entitlement so a store can index the derived
 * status (graceDays(e.policy), src/domain/types.ts) without knowing the policy's rules.
 */
export interface EntitlementRepo {
  insert(e: Entitlement, graceDays: number): void;
  update(e: Entitlement, graceDays: number): void;
  get(id: string): StoredEntitlement | undefined;
  getByExternalId(externalId: string): StoredEntitlement | undefined;
  /**
   * The tenant's entitlements for a product that are not revoked, in grant-rule order (end of term
   * soonest first, then age), at most 100. May be shared objects: callers do not mutate them.
   */
  candidates(tenantId: string, productId: string): ReadonlyArray<Readonly<StoredEntitlement>>;
  /** candidates() across every tenant. */
  candidatesForProduct(productId: string): StoredEntitlement[];
  /** Changes with every change to any entitlement's terms, from any connection. */
  epoch(): bigint | number;
  /** In seq order, after `afterSeq`, at most `limit`. */
  list(f: EntitlementFilter): StoredEntitlement[];
}

/** Leases, the entitlement counters and the lease event log. */
export interface LeaseRepo {
  insert(l: Omit<Lease, 'seq' | 'state' | 'endedAt'>): void;
  get(id: string): Lease | undefined;
  /** The subject's active lease on the entitlement, if any; its time may have run out. */
  activeFor(entitlementId: string, subjectType: string, subjectKey: string): Lease | undefined;
  refresh(id: string, at: number, expiresAt: number, features: string[]): void;
  /** Ends an active lease; false when it was not active (someone else ended it). */
  end(id: string, state: Exclude<LeaseState, 'active'>, at: number): boolean;
  /** Adds delta to the entitlement's active-lease counter; returns the new value. */
  bumpActive(entitlementId: string, delta: number): number;
  bumpSeats(entitlementId: string, delta: number): void;
  /** Marks an active lease borrowed (its expiry is set by refresh). */
  borrow(id: string): void;
  /** Forgets instances whose time has passed (the sweep); returns how many. */
  pruneInstances(now: number): number;
  /** A shared lease's instance: when it ends (ms), if the lease has it. */
  instanceExpiry(leaseId: string, instanceId: string): number | undefined;
  /** The lease's instances in force at `now`. */
  liveInstances(leaseId: string, now: number): number;
  /** Adds an instance to a lease, or moves its expiry. */
  putInstance(leaseId: string, instanceId: string, expiresAt: number): void;
  dropInstance(leaseId: string, instanceId: string): void;
  /** Forgets every instance of a lease (it ended). */
  dropInstances(leaseId: string): void;
  /** When the entitlement's next active lease ends (ms), if it has one: the queue's timer. */
  nextExpiry(entitlementId: string): number | undefined;
  counters(entitlementId: string): EntitlementCounters;
  /** Active leases whose time has passed, soonest first, at most `limit` (null: any entitlement). */
  expired(entitlementId: string | null, now: number, limit: number): Lease[];
  /** Leases in force now (not merely unswept). */
  liveCount(entitlementId: string, now: number): number;
  /** Borrowed leases in force now (the max_borrowed_seats check, usage). */
  liveBorrowedCount(entitlementId: string, now: number): number;
  /** Of these entitlements, the one the subject leased on last (in any state), if any. */
  lastEntitlementOf(
    entitlementIds: readonly string[],
    subjectType: string,
    subjectKey: string,
  ): string | undefined;
  event(e: LeaseEvent): void;
  /** Leases in force, in seq order, after `afterSeq`, at most `limit`. */
  list(f: LeaseFilter): ListedLease[];
}

/** Named seats. */
export interface SeatRepo {
  insert(s: Seat): void;
  find(entitlementId: string, subjectType: string, subjectKey: string): Seat | undefined;
  get(id: string): Seat | undefined;
  remove(id: string): void;
  /** The entitlement's seats in id order after `afterId`, at most `limit`. */
  page(entitlementId: string, afterId: string, limit: number): Seat[];
}

export interface InstallationFilter {
  entitlementId?: string | undefined;
  tenantId?: string | undefined;
  quota?: string | undefined;
  /** Only installations of entitlements for one of these products (undefined: any product). */
  productIds?: readonly string[] | undefined;
  afterSeq: number;
  limit: number;
}

/** Installations: the consumed units of quotas (policy_json.quotas). */
export interface InstallationRepo {
  insert(i: Installation): void;
  get(id: string): StoredInstallation | undefined;
  /** The entitlement's installation made with this idempotency key, if any. */
  byKey(entitlementId: string, idempotencyKey: string): StoredInstallation | undefined;
  /** How many installations the entitlement holds of a quota. */
  count(entitlementId: string, quota: string): number;
  /** The entitlement's installations per quota name (names with none are absent). */
  counts(entitlementId: string): Record<string, number>;
  /** Every entitlement's installations per quota name, by entitlement id (sync exports). */
  allCounts(): Map<string, Record<string, number>>;
  remove(id: string): void;
  setVersion(id: string, version: string, at: number): void;
  /** In seq order, after `afterSeq`, at most `limit`. */
  list(f: InstallationFilter): StoredInstallation[];
  /** Records an install (+1) or a removal (-1) at `at` (ms), for the daily report. */
  event(at: number, entitlementId: string, quota: string, delta: 1 | -1): void;
  /** Installs and removals per UTC day (00:00 in ms) and quota over [from, to), oldest first. */
  daily(entitlementId: string, from: number, to: number): QuotaDay[];
}

/** One UTC day of one quota's installs and removals. */
export interface QuotaDay {
  day: number;
  quota: string;
  added: number;
  removed: number;
}

/** Usage figures from the lease event log, over [from, to). */
export interface UsageRepo {
  window(entitlementId: string, from: number, to: number): WindowStats;
  /** Seats whose holder leased or renewed in the window. */
  activeSeats(entitlementId: string, from: number, to: number): number;
  /** One row per UTC day with events, oldest first. */
  daily(entitlementId: string, from: number, to: number): DayStats[];
}

export type ClockEventKind = 'suspect' | 'recovered' | 'vouched';

/** Small key/value server state (settings, the time high-water mark) and the clock events. */
export interface StateRepo {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  /** The seq of the newest clock event of a kind (0 when none). */
  lastClockEventSeq(kind: ClockEventKind): number;
  /** Appends a clock event; returns its seq. */
  clockEvent(
    at: number,
    kind: ClockEventKind,
    hwm: number,
    details: Record<string, unknown>,
  ): number;
  /** Is any active entitlement managed by a vendor bundle? */
  hasBundleEntitlements(): boolean;
  clockEvents(sinceMs: number): Array<{
    seq: number;
    at: number;
    kind: string;
    hwm: number;
    details: Record<string, unknown>;
  }>;
}

/** API tokens, by keyed hash. */
export interface ApiTokenRepo {
  insert(t: ApiToken, hash: Buffer): void;
  findByHash(hash: Buffer): StoredApiToken | undefined;
  get(id: string): StoredApiToken | undefined;
  list(): StoredApiToken[];
  touch(id: string, at: number): void;
  /** False when it was revoked already. */
  revoke(id: string, at: number): boolean;
}

export interface TxAsyncOptions {
  /** How long to wait for another process's lock (ms); the store's default otherwise. */
  deadlineMs?: number;
  /**
   * Commit without waiting for the disk: a power cut may lose it. Only for a step that is written
   * again when lost, and that a later durable commit covers.
   */
  lazySync?: boolean;
}

/**
 * The repositories and the three ways to group writes. Everything a function passed to tx, txAsync
 * or batch reads and writes is one transaction: its refusal (a thrown error) undoes its writes.
 */
export interface Store {
  entitlements: EntitlementRepo;
  apiTokens: ApiTokenRepo;
  audit: AuditLog;
  /** BPSYNC/1's ledgers, revocations and import bookkeeping (src/domain/sync-store.ts). */
  readonly sync: SyncStore;
  state: StateRepo;
  leases: LeaseRepo;
  seats: SeatRepo;
  installations: InstallationRepo;
  usage: UsageRepo;
  /**
   * Runs fn in one write transaction, the write lock taken up front. Another process holding the
   * lock longer than the store's busy timeout: the store's busy error (answered `503 busy`).
   */
  tx<T>(fn: () => T): T;
  /**
   * tx(), but another process's lock is waited for without blocking the event loop, up to
   * `deadlineMs`. For work prepared outside the lock that only applies here (imports).
   */
  txAsync<T>(fn: () => T, opts?: TxAsyncOptions): Promise<T>;
  /**
   * Runs fn inside a transaction shared with concurrent callers (group commit); settles after the
   * commit. fn may run twice (when another caller's failure undoes the batch), so its effects
   * belong in the store, not in memory, and a refusal should throw before fn writes anything.
   */
  batch<T>(fn: () => T): Promise<T>;
  /** Calls `listener` after a write transaction was rolled back, for state kept in memory. */
  onRollback(listener: () => void): void;
  /** Changes when another connection commits (ours do not change it). */
  dataVersion(): number;
}

/**
 * The same repository with every answer a promise: the shape an asynchronous store (PostgreSQL, a
 * later issue) implements. See the README's Development section for how it plugs in.
 */
export type AsyncRepo<R> = {
  [K in keyof R]: R[K] extends (...args: infer A) => infer T
    ? (...args: A) => Promise<Awaited<T>>
    : R[K];
};

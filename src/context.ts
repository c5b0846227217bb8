import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import { AppError } from './errors.ts';
import {
  assertWritable,
  dataPaths,
  loadIdentity,
  tightenModes,
  tokenHashKey,
  type ServerInfo,
} from './data-dir.ts';
import { databaseBytes, QUICK_CHECK_MAX_BYTES } from './storage/integrity.ts';
import type { Durability } from './storage/db.ts';
import { openStore, type AnyStore } from './storage/store.ts';
import {
  CLI_CALL_TIMEOUT_MS,
  openPgStore,
  SERVER_CALL_TIMEOUT_MS,
  SERVER_LOCK_TIMEOUT_MS,
} from './storage/pg/store.ts';
import { loadSqliteBinding } from './storage/native.ts';
import { createEntitlementService } from './domain/entitlements.ts';
import { createApiTokenService } from './domain/api-tokens.ts';
import type { SigningKey } from './tokens/keys.ts';
import { createLeaseService } from './domain/leases.ts';
import { createTimeGuard } from './domain/time-guard.ts';
import { createSyncService } from './sync/service.ts';
import { createSeatService } from './domain/seats.ts';
import { createQuotaService } from './domain/quotas.ts';
import { createUsageService } from './domain/usage.ts';
import { createAuditService } from './domain/audit.ts';
import { createTemplateService } from './domain/templates.ts';

export interface ContextOptions {
  dataDir: string;
  /**
   * A PostgreSQL connection string (`postgres://…`): the store is that database, shared with the
   * other server processes; the data directory keeps the identity files only. Undefined: SQLite in
   * the data directory.
   */
  database?: string | undefined;
  nativeCacheDir: string;
  durability?: Durability;
  clock?: Clock;
  services?: ServiceOptions;
  /**
   * Run PRAGMA quick_check before serving (the server at start). `bounded`: only when the database
   * and its WAL are at most QUICK_CHECK_MAX_BYTES, so start-up stays fast; larger ones get the
   * header and schema checks only (audit verify and backup check them fully).
   */
  quickCheck?: 'bounded' | 'always' | 'never';
  /** The connection's busy timeout (see OpenOptions.busyTimeoutMs); the serving process passes a short one. */
  busyTimeoutMs?: number;
}

/** What the start-up checks did, for the server's first log line. */
export interface StartupCheck {
  quick_check: 'ok' | 'skipped';
  db_bytes: number;
  ms: number;
}

/** Everything a face (CLI command, HTTP app) needs: the store, the server identity and the domain services. */
export interface Context {
  dataDir: string;
  clock: Clock;
  store: AnyStore;
  info: ServerInfo;
  key: SigningKey;
  services: Services;
  /** Set when the context was opened with quickCheck. */
  startupCheck?: StartupCheck;
  /** Lines about file modes that were tightened, or could not be (for the caller to print or log). */
  modeNotes: string[];
  close(): void;
}

export type Services = ReturnType<typeof createServices>;

/** On PostgreSQL, how often a waiting lease request looks again for a seat freed by another node (ms). */
export const QUEUE_RECHECK_MS = 1000;

export interface ServiceOptions {
  defaultLeaseTtlSeconds?: number | undefined;
  /** A monotonic clock for the time guard; the server passes performance.now, tests leave it out. */
  monotonicMs?: (() => number) | undefined;
}

export function createServices(
  store: AnyStore,
  clock: Clock,
  key: SigningKey,
  info: ServerInfo,
  opts: ServiceOptions = {},
) {
  const timeGuard = createTimeGuard({ store, clock, monotonicMs: opts.monotonicMs });
  const audit = createAuditService({ log: store.audit });
  const leases = createLeaseService({
    store,
    clock,
    key,
    serverId: info.server_id,
    timeGuard,
    ...(opts.defaultLeaseTtlSeconds ? { defaultTtlSeconds: opts.defaultLeaseTtlSeconds } : {}),
    // Other server processes free seats on a shared PostgreSQL: waiters look again each second.
    ...(store.kind === 'postgres' ? { queueRecheckMs: QUEUE_RECHECK_MS } : {}),
  });
  // A change to an entitlement's terms answers its waiting lease requests at once.
  const entitlements = createEntitlementService({
    store,
    clock,
    onChange: (id) => leases.entitlementChanged(id),
  });
  const core = {
    timeGuard,
    audit,
    entitlements,
    seats: createSeatService({ store, clock }),
    quotas: createQuotaService({ store, clock, timeGuard }),
    usage: createUsageService({ store, clock }),
    apiTokens: createApiTokenService({ store, clock, hashKey: tokenHashKey(key) }),
    leases,
    sync: createSyncService({
      store,
      clock,
      key,
      info,
      timeGuard,
      audit,
      onEntitlementsChanged: () => leases.entitlementChanged(),
    }),
  };
  return {
    ...core,
    templates: createTemplateService({
      store,
      clock,
      entitlements,
      quotas: core.quotas,
      leases: core.leases,
    }),
  };
}

/**
 * Opens an initialised data directory after the start-up checks (docs/design.md "Process, files and
 * resources"), in this order, each refusing with a clear error and a hint before anything is
 * written: the identity files (loadIdentity), a writable file system (assertWritable), the database
 * file (not missing, not empty, an SQLite header, whole pages), its schema version, optionally
 * PRAGMA quick_check, then migrations and the expected schema, and the server id the database
 * was made for. Then group/other permission bits on license.db (-wal, -shm) and server.json are
 * removed (modeNotes says which).
 *
 * @throws AppError `not_found`, `conflict` (details.check names the check), `forbidden`,
 *   `storage_unavailable` (read-only file system)
 */
export function openContext(opts: ContextOptions): Context {
  if (opts.database !== undefined)
    return openPgContext(opts as ContextOptions & { database: string });
  const { info, key } = loadIdentity(opts.dataDir);
  assertWritable(opts.dataDir);
  const file = dataPaths(opts.dataDir).db;
  const started = performance.now();
  const bytes = databaseBytes(file);
  const quick =
    opts.quickCheck === 'always' ||
    (opts.quickCheck === 'bounded' && bytes <= QUICK_CHECK_MAX_BYTES);
  const store = openStore(file, {
    durability: opts.durability ?? 'full',
    nativeBinding: loadSqliteBinding(opts.nativeCacheDir),
    mustExist: true,
    quickCheck: quick,
    ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}),
  });
  // init records the server id in the database; identity files from another server do not fit it.
  const recorded = store.state.get('server_id');
  if (recorded !== undefined && recorded !== info.server_id) {
    store.close();
    throw new AppError(
      'conflict',
      `server.json names server ${info.server_id} but license.db belongs to ${recorded}; the identity files come from another server; refusing to start`,
      {
        data_dir: opts.dataDir,
        check: 'identity',
        server_json: info.server_id,
        database: recorded,
      },
      'restore license.db, server.key and server.json together from one backup of this server (bp-license-server backup)',
    );
  }
  const startupCheck: StartupCheck | undefined =
    opts.quickCheck === undefined || opts.quickCheck === 'never'
      ? undefined
      : {
          quick_check: quick ? 'ok' : 'skipped',
          db_bytes: bytes,
          ms: Math.round(performance.now() - started),
        };
  return assemble(opts, store, { info, key }, startupCheck);
}

/** The context over an opened store: file modes tightened, the services made. */
function assemble(
  opts: ContextOptions,
  store: AnyStore,
  { info, key }: { info: ServerInfo; key: SigningKey },
  startupCheck?: StartupCheck,
): Context {
  const modeNotes = tightenModes(opts.dataDir, { dir: false });
  const clock = opts.clock ?? systemClock;
  return {
    ...(startupCheck ? { startupCheck } : {}),
    modeNotes,
    dataDir: opts.dataDir,
    clock,
    store,
    info,
    key,
    services: createServices(store, clock, key, info, {
      monotonicMs: () => performance.now(),
      ...opts.services,
    }),
    close: () => store.close(),
  };
}

/**
 * openContext on PostgreSQL: the identity files from the data directory (each node has a copy),
 * the database migrated under its advisory lock, and the server id it was initialised for.
 *
 * @throws AppError `not_found` (identity files), `storage_unavailable` (PostgreSQL unreachable),
 *   `conflict` (the database belongs to another server, or was never initialised by `init`)
 */
function openPgContext(opts: ContextOptions & { database: string }): Context {
  const { info, key } = loadIdentity(opts.dataDir, { withDatabase: false });
  const serving = opts.busyTimeoutMs !== undefined;
  const store = openPgStore(opts.database, {
    dataDir: opts.dataDir,
    // The server never blocks long on the database; a person at the CLI can wait.
    ...(serving
      ? { lockTimeoutMs: SERVER_LOCK_TIMEOUT_MS, callTimeoutMs: SERVER_CALL_TIMEOUT_MS }
      : { callTimeoutMs: CLI_CALL_TIMEOUT_MS }),
  });
  let recorded: string | undefined;
  try {
    recorded = store.state.get('server_id');
  } catch (err) {
    store.close();
    throw err;
  }
  if (recorded !== info.server_id) {
    store.close();
    throw new AppError(
      'conflict',
      recorded === undefined
        ? `the PostgreSQL database ${store.file} was not initialised for server ${info.server_id}; refusing to start`
        : `server.json names server ${info.server_id} but the PostgreSQL database belongs to ${recorded}; refusing to start`,
      {
        data_dir: opts.dataDir,
        check: 'identity',
        server_json: info.server_id,
        database: recorded ?? null,
      },
      recorded === undefined
        ? "check that --database (BPLS_DATABASE_URL) names this server's database; a new database is initialised only by init --database with an empty --data-dir, whose directory every node then copies"
        : 'give every node a copy of the data directory made by the init that created this database',
    );
  }
  return assemble(opts, store, { info, key });
}

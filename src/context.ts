import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import { dataPaths, loadIdentity, tokenHashKey, type ServerInfo } from './data-dir.ts';
import type { Durability } from './storage/db.ts';
import { openStore, type Store } from './storage/store.ts';
import { loadSqliteBinding } from './storage/native.ts';
import { createEntitlementService } from './domain/entitlements.ts';
import { createApiTokenService } from './domain/api-tokens.ts';
import type { SigningKey } from './tokens/keys.ts';
import { createLeaseService } from './domain/leases.ts';
import { createTimeGuard } from './domain/time-guard.ts';
import { createSyncService } from './sync/service.ts';
import { createSeatService } from './domain/seats.ts';
import { createUsageService } from './domain/usage.ts';

export interface ContextOptions {
  dataDir: string;
  nativeCacheDir: string;
  durability?: Durability;
  clock?: Clock;
  services?: ServiceOptions;
  /** The connection's busy timeout (see OpenOptions.busyTimeoutMs); the serving process passes a short one. */
  busyTimeoutMs?: number;
}

/** Everything a face (CLI command, HTTP app) needs: the store, the server identity and the domain services. */
export interface Context {
  dataDir: string;
  clock: Clock;
  store: Store;
  info: ServerInfo;
  key: SigningKey;
  services: Services;
  close(): void;
}

export type Services = ReturnType<typeof createServices>;

export interface ServiceOptions {
  defaultLeaseTtlSeconds?: number | undefined;
  /** A monotonic clock for the time guard; the server passes performance.now, tests leave it out. */
  monotonicMs?: (() => number) | undefined;
}

export function createServices(store: Store, clock: Clock, key: SigningKey, info: ServerInfo, opts: ServiceOptions = {}) {
  const timeGuard = createTimeGuard({ store, clock, monotonicMs: opts.monotonicMs });
  return {
    timeGuard,
    entitlements: createEntitlementService({ store, clock }),
    seats: createSeatService({ store, clock }),
    usage: createUsageService({ store, clock }),
    apiTokens: createApiTokenService({ store, clock, hashKey: tokenHashKey(key) }),
    leases: createLeaseService({ store, clock, key, serverId: info.server_id, timeGuard, ...(opts.defaultLeaseTtlSeconds ? { defaultTtlSeconds: opts.defaultLeaseTtlSeconds } : {}) }),
    sync: createSyncService({ store, clock, key, info, timeGuard }),
  };
}

/** Opens an initialised data directory. */
export function openContext(opts: ContextOptions): Context {
  const { info, key } = loadIdentity(opts.dataDir);
  const store = openStore(dataPaths(opts.dataDir).db, {
    durability: opts.durability ?? 'full',
    nativeBinding: loadSqliteBinding(opts.nativeCacheDir),
    mustExist: true,
    ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}),
  });
  const clock = opts.clock ?? systemClock;
  return {
    dataDir: opts.dataDir,
    clock,
    store,
    info,
    key,
    services: createServices(store, clock, key, info, { monotonicMs: () => performance.now(), ...opts.services }),
    close: () => store.close(),
  };
}

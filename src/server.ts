import { getRequestListener } from '@hono/node-server';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppError } from './errors.ts';
import { BODY_LIMIT, createApp } from './app.ts';
import { createMetrics } from './http/metrics.ts';
import { createLeaseApi } from './http/lease-api.ts';
import { createLeaseFastPath } from './http/lease-fast-path.ts';
import { openContext, type Context } from './context.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { migrationNotes, SERVER_BUSY_TIMEOUT_MS, type Durability } from './storage/db.ts';
import { startStorageUpkeep } from './storage/upkeep.ts';
import { dataPaths } from './data-dir.ts';

export interface ServeConfig {
  dataDir: string;
  nativeCacheDir: string;
  host: string;
  port: number;
  durability: Durability;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** How long in-flight requests get to finish after SIGTERM. */
  drainMs?: number;
  clock?: Clock;
  /** How often expired leases are marked and their events written. */
  sweepIntervalSeconds?: number;
  defaultLeaseTtlSeconds?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  ctx: Context;
  /** Stop accepting, let in-flight requests finish, close the database. */
  close(): Promise<void>;
}

/** Opens the data directory, builds the app and listens. Rejects with an AppError a person can act on. */
export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new AppError('invalid_request', '--tls-cert and --tls-key go together');
  }
  const ctx = openContext({
    dataDir: config.dataDir,
    nativeCacheDir: config.nativeCacheDir,
    durability: config.durability,
    // Never sleep long on another process's lock on the event loop: longer waits are timers.
    busyTimeoutMs: SERVER_BUSY_TIMEOUT_MS,
    services: { defaultLeaseTtlSeconds: config.defaultLeaseTtlSeconds },
    quickCheck: 'bounded',
    ...(config.clock ? { clock: config.clock } : {}),
  });
  for (const note of ctx.modeNotes) log.warn(note, {});
  log.debug('start-up checks passed', { ...ctx.startupCheck });
  if (ctx.startupCheck?.quick_check === 'skipped') {
    log.warn('license.db is over the start-up quick_check size; checked its header and schema only; run audit verify (integrity_check) in a quiet hour', { ...ctx.startupCheck });
  }
  for (const n of migrationNotes(ctx.store.db)) log.warn(n.message, { migration: n.migration, ...n.details });
  let draining = false;
  const metrics = createMetrics();
  // WAL checkpoints on their own thread; full or read-only storage as episodes (storage/upkeep.ts).
  const upkeep = startStorageUpkeep({ db: ctx.store.db, file: dataPaths(config.dataDir).db, log });
  const storageHealth = upkeep.health;
  const app = createApp({ services: ctx.services, store: ctx.store, clock: ctx.clock, info: ctx.info, log, metrics, isDraining: () => draining, storage: upkeep });
  // The client lease routes go straight to their handlers; everything else through the Hono app.
  const lease = createLeaseFastPath({ api: createLeaseApi(ctx.services), log, metrics, bodyLimit: BODY_LIMIT, storageHealth });
  const viaHono = getRequestListener(app.fetch);
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    if (!lease(req, res)) void viaHono(req, res);
  };

  let server: Server;
  try {
    server = config.tlsCert
      ? (createHttpsServer({ cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey!) }, listener) as unknown as Server)
      : createHttpServer(listener);
  } catch (err) {
    void upkeep.close().then(() => ctx.close());
    throw new AppError('invalid_request', `cannot use the TLS certificate or key: ${(err as Error).message}`);
  }
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await upkeep.close();
    ctx.close();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw new AppError('conflict', `port ${config.port} on ${config.host} is in use`, {}, 'stop the other process or pick another --port');
    if (e.code === 'EACCES') throw new AppError('forbidden', `not allowed to listen on ${config.host}:${config.port}`, {}, 'ports below 1024 need privileges; pick a port above 1024');
    if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') throw new AppError('invalid_request', `cannot listen on ${config.host}: no such address on this machine`);
    throw new AppError('internal', `cannot listen on ${config.host}:${config.port}: ${e.message}`);
  }
  server.on('error', (err) => log.error('server error', { error: String(err) }));

  // Expired leases already free their seats at grant time; the sweep marks them for reports. Once
  // now (a server that was down marks what expired meanwhile before it serves), then every interval.
  sweepNow();
  const sweep = setInterval(sweepNow, (config.sweepIntervalSeconds ?? 30) * 1000);
  sweep.unref();
  function sweepNow(): void {
    try {
      // An episode of the clock guard that no request saw start or end (at start: one a restart
      // after the fix must close) is written now, not at the next grant.
      ctx.services.timeGuard.tick();
    } catch (err) {
      log.warn('clock check failed; will retry', { error: String(err) });
    }
    try {
      const n = ctx.services.leases.sweep();
      if (n > 0) log.info('swept expired leases', { count: n });
    } catch (err) {
      // A full or read-only disk is logged once per episode, not at every sweep.
      if (!storageHealth.failed(err)) log.warn('lease sweep failed; will retry', { error: String(err) });
    }
  }

  // A big bundle import interrupted half-way (a crash) is finished now, in steps, while serving.
  ctx.services.sync.finishInterruptedImport().then(
    (done) => done && log.info('finished a bundle import that was interrupted', ctx.services.sync.status().last_import ?? {}),
    (err) => log.error('cannot finish an interrupted bundle import; import that bundle again', { error: String(err) }),
  );

  const port = (server.address() as AddressInfo).port;
  const scheme = config.tlsCert ? 'https' : 'http';
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;

  return {
    url: `${scheme}://${hostForUrl}:${port}`,
    port,
    ctx,
    close() {
      closing ??= new Promise<void>((resolve) => {
        draining = true;
        clearInterval(sweep);
        const force = setTimeout(() => server.closeAllConnections(), config.drainMs ?? 10_000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          void upkeep.close().then(() => {
            ctx.close();
            resolve();
          });
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

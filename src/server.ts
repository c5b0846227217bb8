import { createServer as createHttpServer, ServerResponse, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { withFile } from './file-errors.ts';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { AppError } from './errors.ts';
import { createApp } from './app.ts';
import { createBodyReader } from './http/body.ts';
import { answerOnSocket, createProtocolErrorHandler } from './http/protocol-errors.ts';
import { DEFAULT_BODY_BUDGET, MAX_CONNECTIONS, HEADERS_TIMEOUT_MS } from './http/limits.ts';
import { createMetrics } from './http/metrics.ts';
import { openContext, type Context } from './context.ts';
import type { Logger } from './log.ts';
import type { Clock } from './clock.ts';
import { SERVER_BUSY_TIMEOUT_MS, type Durability } from './storage/db.ts';
import { startStorageUpkeep } from './storage/upkeep.ts';
import { startPeriodic } from './periodic.ts';
import { startFolderSync } from './sync/watch.ts';
import { startOutboundSync, type OutboundSync } from './sync/outbound.ts';
import { join } from 'node:path';

export interface ServeConfig {
  dataDir: string;
  /** PostgreSQL's connection string; undefined: SQLite in the data directory. */
  database?: string | undefined;
  nativeCacheDir: string;
  host: string;
  port: number;
  durability: Durability;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** How long in-flight requests get to finish after SIGTERM (default 10 s); then connections are cut. */
  drainMs?: number;
  /** Bytes of request bodies held across all connections; past it new bodies get 503 busy (default 32 MiB). */
  bodyBudgetBytes?: number;
  /**
   * Open connections at most (default MAX_CONNECTIONS, http/limits.ts); past it a new connection is
   * closed at once, so a flood of idle connections cannot grow memory without bound.
   */
  maxConnections?: number;
  /** How long headers and bodies may take to arrive (defaults in http/limits.ts: 15 s, 10 s, 60 s). */
  timeouts?: { headersMs?: number; leaseBodyMs?: number; bodyMs?: number };
  clock?: Clock;
  /** How often expired leases are marked and their events written. */
  sweepIntervalSeconds?: number;
  defaultLeaseTtlSeconds?: number;
  /** The folder watch and outbound sync to run beside the HTTP server; none when undefined. */
  sync?: ServeSyncConfig;
}

/** `serve --sync-dir/--sync-url` (checked by the serve command: cli/commands/serve.ts). */
export interface ServeSyncConfig {
  /** The sync folder: bundles come in at dir/inbox, exports wait in dir/outbox. */
  dir: string;
  /** Poll dir/inbox and import what arrives there. */
  watch: boolean;
  /** The vendor's base URL for outbound sync (checked: parseSyncUrl); off when undefined. */
  url?: string;
  /** How often the inbox is polled (default 1000). */
  pollMs?: number;
  /** How long a still-incomplete bundle must stay unchanged before it is refused as truncated (default 10 min). */
  incompleteWaitMs?: number;
  /** Between outbound sync runs (default 1 h). */
  intervalMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  ctx: Context;
  /** Bytes of request bodies held now, against ServeConfig.bodyBudgetBytes. */
  bodyBytesHeld(): number;
  /**
   * Drain: every request already received is answered (with `Connection: close`), connections the
   * kernel had accepted first; idle connections close; then the database closes. drainMs at most.
   */
  close(): Promise<void>;
}

/** Opens the data directory, builds the app and listens. Rejects with an AppError a person can act on. */
export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new AppError('invalid_request', '--tls-cert and --tls-key go together');
  }
  const ctx = openContext({
    dataDir: config.dataDir,
    database: config.database,
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
    log.warn(
      'license.db is over the start-up quick_check size; checked its header and schema only; run audit verify (integrity_check) in a quiet hour',
      { ...ctx.startupCheck },
    );
  }
  for (const n of ctx.store.migrationNotes())
    log.warn(n.message, { migration: n.migration, ...n.details });
  let draining = false;
  const metrics = createMetrics();
  // WAL checkpoints on their own thread; full or read-only storage as episodes (storage/upkeep.ts).
  const upkeep = startStorageUpkeep({ store: ctx.store, log });
  const storageHealth = upkeep.health;
  // Every body the server takes is read under one budget of held bytes (http/body.ts).
  const bodies = createBodyReader(config.bodyBudgetBytes ?? DEFAULT_BODY_BUDGET);
  const app = createApp({
    services: ctx.services,
    store: ctx.store,
    clock: ctx.clock,
    info: ctx.info,
    log,
    metrics,
    isDraining: () => draining,
    storage: upkeep,
    bodies,
    timeouts: { leaseBodyMs: config.timeouts?.leaseBodyMs, bodyMs: config.timeouts?.bodyMs },
  });

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    // A pipelined request behind an answer not yet written: that answer must not close the
    // connection while draining (see DrainAwareResponse). One load and one store per request.
    const socket = req.socket as Socket & { [LAST]?: ServerResponse };
    const prev = socket[LAST];
    if (prev !== undefined && !prev.writableEnded)
      (prev as ServerResponse & { [FOLLOWED]?: boolean })[FOLLOWED] = true;
    socket[LAST] = res;
    app.serveNode(req, res);
  };

  // Answers given while draining say `Connection: close`, unless a pipelined request waits behind
  // them: node:http reads shouldKeepAlive when it writes the headers. No cost per request otherwise.
  class DrainAwareResponse extends ServerResponse {}
  Object.defineProperty(DrainAwareResponse.prototype, 'shouldKeepAlive', {
    get(this: Record<symbol, boolean | undefined>) {
      return this[KEEP_ALIVE] === true && (!draining || this[FOLLOWED] === true);
    },
    set(this: Record<symbol, boolean | undefined>, v: boolean) {
      this[KEEP_ALIVE] = v;
    },
  });
  // headersTimeout: a real client sends its headers at once. requestTimeout: the outer bound for
  // a streamed sync bundle; other bodies are cut sooner by the body reader (limits.ts). The
  // connections are checked every second (Node's default is 30 s).
  const options = {
    ServerResponse: DrainAwareResponse as typeof ServerResponse,
    requireHostHeader: false,
    headersTimeout: config.timeouts?.headersMs ?? HEADERS_TIMEOUT_MS,
    requestTimeout: 300_000,
    connectionsCheckingInterval: 1_000,
  };

  let server: Server;
  try {
    server = config.tlsCert
      ? (createHttpsServer(
          {
            ...options,
            cert: readTlsFile('the TLS certificate (--tls-cert)', config.tlsCert),
            key: readTlsFile('the TLS key (--tls-key)', config.tlsKey!),
          },
          listener,
        ) as unknown as Server)
      : createHttpServer(options, listener);
  } catch (err) {
    bodies.stop();
    void upkeep.close().then(() => ctx.close());
    if (err instanceof AppError) throw err;
    throw new AppError(
      'invalid_request',
      `cannot use the TLS certificate or key: ${(err as Error).message}`,
      {},
      'give a PEM certificate and its PEM private key',
    );
  }
  server.on('clientError', createProtocolErrorHandler(app.pipeline));
  // node:http closes a CONNECT without a word when nobody listens: this server is no proxy, say so.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    answerOnSocket(
      socket,
      new AppError('invalid_request', 'CONNECT is not supported: this server is not a proxy'),
      app.pipeline,
      'CONNECT',
      'connect',
    );
  });
  // An Expect other than 100-continue gets an empty 417 from node:http: served as if it were absent.
  server.on('checkExpectation', listener);
  // Expect: 100-continue: a body refused from its headers (declared over the cap or the budget) is
  // answered at once, and the client is not told to send it.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    listener(req, res);
    if (!res.headersSent) res.writeContinue();
  });
  let accepted = 0;
  server.on('connection', () => accepted++);
  // Connections by when they were accepted (for TLS, once the handshake is done: that socket is the
  // one requests come on), so a drain can close those that never sent a request.
  const sockets = new Map<Socket, number>();
  server.on(config.tlsCert ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.set(socket, performance.now());
    socket.once('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 65_000;
  server.maxConnections = config.maxConnections ?? MAX_CONNECTIONS;
  // A client that half-closes after its request (shutdown(SHUT_WR), `nc -N`) still reads the
  // answer: without this node:http ends the socket at the client's FIN, and a grant committed
  // meanwhile would hold a seat nobody was told about.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;

  // The folder watch and outbound sync import on this connection and log through this logger;
  // close() stops them (waiting for an import in progress) before the database closes.
  let sync: { stop(): Promise<void> };
  try {
    sync = startSync(config.sync, ctx, log);
  } catch (err) {
    bodies.stop();
    await upkeep.close();
    ctx.close();
    throw err;
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await sync.stop();
    await upkeep.close();
    ctx.close();
    bodies.stop();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE')
      throw new AppError(
        'conflict',
        `port ${config.port} on ${config.host} is in use`,
        {},
        'stop the other process or pick another --port',
      );
    if (e.code === 'EACCES')
      throw new AppError(
        'forbidden',
        `not allowed to listen on ${config.host}:${config.port}`,
        {},
        'ports below 1024 need privileges; pick a port above 1024',
      );
    if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
      throw new AppError(
        'invalid_request',
        `cannot listen on ${config.host}: no such address on this machine`,
      );
    // Anything else the system refuses (no free file descriptors, a bad address family) is the
    // machine's state or the options, not a bug of ours.
    throw new AppError(
      'invalid_request',
      `cannot listen on ${config.host}:${config.port}: ${e.code ?? e.message}`,
      {},
      'check --host and --port, and the open-files limit (ulimit -n)',
    );
  }
  server.on('error', (err) => log.error('server error', { error: String(err) }));

  // Expired leases already free their seats at grant time; the sweep marks them for reports. Once
  // now (a server that was down marks what expired meanwhile before it serves), then every interval.
  const sweep = startPeriodic({
    intervalMs: (config.sweepIntervalSeconds ?? 30) * 1000,
    run: sweepNow,
    onError: (err) => log.warn('lease sweep failed; will retry', { error: String(err) }),
  });
  void sweep.runNow();
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
      if (!storageHealth.failed(err))
        log.warn('lease sweep failed; will retry', { error: String(err) });
    }
  }

  // A big bundle import interrupted half-way (a crash) is finished now, in steps, while serving.
  ctx.services.sync.finishInterruptedImport().then(
    (done) =>
      done &&
      log.info(
        'finished a bundle import that was interrupted',
        ctx.services.sync.status().last_import ?? {},
      ),
    (err) =>
      log.error('cannot finish an interrupted bundle import; import that bundle again', {
        error: String(err),
      }),
  );

  const port = (server.address() as AddressInfo).port;
  const scheme = config.tlsCert ? 'https' : 'http';
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;

  return {
    url: `${scheme}://${hostForUrl}:${port}`,
    port,
    ctx,
    bodyBytesHeld: () => bodies.used(),
    close() {
      closing ??= (async () => {
        draining = true;
        // Lease requests waiting for a seat are answered now, not at their deadline.
        ctx.services.leases.stopWaiting();
        void sweep.stop();
        // In parallel with the drain: an inbox import in progress finishes first.
        const syncStopped = sync.stop();
        const drainMs = config.drainMs ?? 10_000;
        const started = performance.now();
        const force = setTimeout(() => server.closeAllConnections(), drainMs);
        force.unref();
        // Connections the kernel accepted before the signal (in the backlog, or accepted but not
        // yet read) carry requests their clients sent: keep accepting until none came for a while,
        // so their bytes are read and their requests are in progress (closing the listener resets
        // the backlog). Every check runs after a poll phase (setImmediate after the timer): a
        // turn blocked by a long fsync must not pass for quiet while connections wait unaccepted.
        const maxWait = Math.min(ACCEPT_MAX_MS, drainMs);
        for (
          let quiet = 0, seen = accepted;
          quiet < ACCEPT_QUIET_TURNS && performance.now() - started < maxWait;
        ) {
          await new Promise((r) => setTimeout(r, ACCEPT_TURN_MS));
          await afterPoll();
          quiet = accepted === seen && handshakesPending(port) === 0 ? quiet + 1 : 0;
          seen = accepted;
        }
        log.info('listener closed; draining connections', {
          connections: sockets.size,
          accept_wait_ms: Math.round(performance.now() - started),
        });
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // An answer whose headers went out before the drain kept its connection: close such
          // connections once they are idle. node:http counts a connection that has sent nothing
          // yet as busy (its headers timeout runs): close it once it stayed silent for a while.
          // After a poll phase, so that bytes that arrived meanwhile are read first.
          const idle = setInterval(() => {
            void afterPoll().then(() => {
              server.closeIdleConnections();
              const now = performance.now();
              for (const [socket, at] of sockets) {
                if (
                  socket.bytesRead === 0 &&
                  (socket as Socket & { [LAST]?: ServerResponse })[LAST] === undefined &&
                  now - at > SILENT_MS
                )
                  socket.destroy();
              }
            });
          }, 100);
          idle.unref();
          server.once('close', () => clearInterval(idle));
        });
        clearTimeout(force);
        bodies.stop();
        // Requests whose clients went away meanwhile may still have writes in the group commit:
        // let them land (a no-op joins the queue behind them) before the database closes.
        for (let i = 0; i < 2; i++) {
          await new Promise((r) => setImmediate(r));
          await ctx.store.batch(() => undefined).catch(() => {});
        }
        // An inbox import still running when the drain time is up is left to the next start (a
        // big one resumes from its durable marker), as a process that exits would leave it.
        const left = Math.max(0, drainMs - (performance.now() - started));
        let waited: NodeJS.Timeout | undefined;
        const finished = await Promise.race([
          syncStopped.then(() => true),
          new Promise<boolean>((r) => (waited = setTimeout(() => r(false), left))),
        ]);
        clearTimeout(waited);
        if (!finished)
          log.warn('a sync import is still running at shutdown; it is left to the next start', {});
        await upkeep.close();
        ctx.close();
      })();
      return closing;
    },
  };
}

/**
 * Starts the folder watch (sync/watch.ts) and the outbound sync (sync/outbound.ts) that `config`
 * asks for, on the server's connection and logger; stop() ends both, each once its run in flight
 * is done.
 */
function startSync(
  config: ServeSyncConfig | undefined,
  ctx: Context,
  log: Logger,
): { stop(): Promise<void> } {
  const service = ctx.services.sync;
  const watcher = config?.watch
    ? startFolderSync({
        dir: config.dir,
        log,
        now: () => ctx.clock.now(),
        ...(config.pollMs !== undefined ? { intervalMs: config.pollMs } : {}),
        ...(config.incompleteWaitMs !== undefined ? { quietMs: config.incompleteWaitMs } : {}),
        importFile: (file, name) => service.importFile(file, { actor: 'sync-dir', name }),
      })
    : undefined;
  let outbound: OutboundSync | undefined;
  try {
    outbound = config?.url
      ? startOutboundSync({
          url: config.url,
          serverId: ctx.info.server_id,
          service,
          log,
          outbox: join(config.dir, 'outbox'),
          ...(config.intervalMs !== undefined ? { intervalMs: config.intervalMs } : {}),
        })
      : undefined;
  } catch (err) {
    void watcher?.stop();
    throw err;
  }
  return {
    async stop() {
      await Promise.all([watcher?.stop(), outbound?.stop()]);
    },
  };
}

const LAST = Symbol('lastResponse');
const FOLLOWED = Symbol('followed');
const KEEP_ALIVE = Symbol('keepAlive');
/**
 * A drain closes the listener once no connection was accepted for this many turns of
 * ACCEPT_TURN_MS each. Under CPU starvation the kernel completes handshakes late (its softirq work
 * waits for CPU too): a client's connect() can return well before the accept queue holds it.
 */
const ACCEPT_QUIET_TURNS = 3;
const ACCEPT_TURN_MS = 50;
/** ...or after this long, under a flood of new connections. */
const ACCEPT_MAX_MS = 2_000;
/** While draining, a connection that sent not a byte this long after it was accepted is closed. */
const SILENT_MS = 500;

/** Resolves in the check phase of the next loop turn: after a poll phase has read what the kernel holds. */
function afterPoll(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * Connections to `port` the kernel holds but this process has not accepted: the accept queue of the
 * listening socket plus handshakes still in SYN_RECV (their last ACK waits for CPU under load),
 * from /proc/net/tcp and tcp6 (Linux). 0 where those files cannot be read: the accept turns alone
 * then decide.
 */
function handshakesPending(port: number): number {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5 || !f[1]!.endsWith(hexPort)) continue;
      if (f[3] === '0A') n += parseInt(f[4]!.split(':')[1]!, 16) || 0;
      else if (f[3] === '03') n++;
    }
  }
  return n;
}

/** A TLS file read for `serve`: a missing or unreadable one is named (fileError), not a raw errno. */
function readTlsFile(what: string, file: string): Buffer {
  return withFile({ action: 'read', what, file }, () => readFileSync(file));
}

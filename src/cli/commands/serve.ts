import { redactUrl } from '../../storage/pg/driver.ts';
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { resolveServe, resolveSync, SERVE_DEFAULTS as D, type Env } from '../../config.ts';
import { startServer, type ServeSyncConfig } from '../../server.ts';
import { parseOptionalInteger } from '../../integer-option.ts';
import { parseSyncUrl } from '../../sync/outbound.ts';
import {
  createLogger,
  openLogFile,
  type CountingLogger,
  type LogFile,
  type LogLevel,
} from '../../log.ts';
import { AppError } from '../../errors.ts';
import { fileError } from '../../file-errors.ts';
import { assertWritable, initState } from '../../data-dir.ts';
import { lockDataDir, type DataDirLock } from '../../storage/data-dir-lock.ts';
import { loadSqliteBinding } from '../../storage/native.ts';
import type { CommandKit } from '../main.ts';

interface ServeOpts {
  host?: string;
  port?: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
  logFile?: string;
  sweepInterval?: string;
  leaseTtl?: string;
  syncDir?: string | false;
  syncPollMs?: string;
  syncIncompleteWait?: string;
  syncUrl?: string;
  syncInterval?: string;
}

/**
 * The folder watch and outbound sync that `serve` runs, from its options (flags > BPLS_SYNC_DIR /
 * BPLS_SYNC_URL > defaults): the folder is watched when named, or when `<dataDir>/sync-bundles`
 * exists; undefined when neither a folder nor a URL is to be served.
 *
 * @throws AppError `invalid_request` with details.usage (exit 2): a bad number or --sync-url
 */
export function serveSyncConfig(
  o: ServeOpts,
  env: Env,
  cwd: string,
  dataDir: string,
): ServeSyncConfig | undefined {
  const sync = resolveSync(o, env, cwd, dataDir);
  const watch = !sync.off && (sync.named || existsSync(sync.dir));
  if (!watch && sync.url === undefined) return undefined;
  const url = sync.url === undefined ? undefined : parseSyncUrl(sync.url);
  return {
    dir: sync.dir,
    watch,
    ...(url !== undefined ? { url } : {}),
    pollMs:
      parseOptionalInteger(o.syncPollMs, {
        name: '--sync-poll-ms',
        min: 10,
        max: 3_600_000,
        unit: 'milliseconds',
      }) ?? 1000,
    incompleteWaitMs:
      (parseOptionalInteger(o.syncIncompleteWait, {
        name: '--sync-incomplete-wait',
        min: 1,
        max: 604_800,
        unit: 'seconds',
      }) ?? 600) * 1000,
    intervalMs:
      (parseOptionalInteger(o.syncInterval, {
        name: '--sync-interval',
        min: 1,
        max: 86_400,
        unit: 'seconds',
      }) ?? 3600) * 1000,
  };
}

/**
 * serve: listen until SIGTERM/SIGINT, then drain and exit 0. The command checks its options, takes
 * the data directory's lock, opens the log and catches the signals; startServer does the rest
 * (the HTTP server, the sweep, the folder watch and the outbound sync, on one connection and one
 * logger).
 */
export function registerServe(program: Command, kit: CommandKit): void {
  program
    .command('serve')
    .description(
      'serve the HTTP API; prints exactly one line "listening on http://HOST:PORT"; SIGTERM drains and exits 0',
    )
    .option('--host <host>', `address to listen on (env BPLS_HOST, default ${D.host})`)
    .option('--port <port>', `port; 0 picks a free one (env BPLS_PORT, default ${D.port})`)
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option(
      '--log-level <level>',
      `debug, info, warn or error (env BPLS_LOG_LEVEL, default ${D.logLevel})`,
    )
    .option(
      '--log-file <file>',
      'append the log to FILE (created 0600) instead of stderr; SIGHUP reopens it (env BPLS_LOG_FILE)',
    )
    .option(
      '--sweep-interval <seconds>',
      `how often expired leases are marked for reports (env BPLS_SWEEP_INTERVAL, default ${D.sweepIntervalSeconds})`,
    )
    .option(
      '--lease-ttl <seconds>',
      `lease lifetime when the policy sets none (env BPLS_LEASE_TTL, default ${D.leaseTtlSeconds})`,
    )
    .option(
      '--sync-dir <dir>',
      'watch DIR/inbox for vendor bundles and import them; a relative DIR is from the current folder (env BPLS_SYNC_DIR; default <data dir>/sync-bundles when that folder exists)',
    )
    .option('--no-sync-dir', 'do not watch any sync folder')
    .option(
      '--sync-poll-ms <ms>',
      'how often the sync inbox is polled, in milliseconds (default 1000)',
    )
    .option(
      '--sync-incomplete-wait <seconds>',
      'how long a bundle that is still incomplete (a copy in progress) must stay unchanged in the inbox before it is rejected as truncated (default 600)',
    )
    .option(
      '--sync-url <url>',
      "outbound sync: pull bundles from and push exports to the vendor's URL on a schedule (env BPLS_SYNC_URL; off by default)",
    )
    .option('--sync-interval <seconds>', 'seconds between outbound sync runs (default 3600)')
    .action(async (opts: ServeOpts, cmd: Command) => {
      const g = kit.globals(cmd);
      // Every option is checked before anything is opened or locked.
      const s = resolveServe(opts, kit.io.env);
      const sync = serveSyncConfig(opts, kit.io.env, kit.io.cwd, g.dataDir);
      // A directory that is not initialised is refused by startServer, with its own message.
      // A read-only file system is refused as such (storage_unavailable), before the lock file is
      // tried. Nothing of a second server starts before the lock says it is alone.
      let lock: DataDirLock | undefined;
      // On PostgreSQL several servers share the database (and may share a copy of the identity
      // files): the data directory's lock is SQLite's, not theirs.
      if (g.database === undefined && initState(g.dataDir) !== 'none') {
        assertWritable(g.dataDir);
        lock = lockDataDir(g.dataDir, {
          role: 'serve',
          nativeBinding: loadSqliteBinding(g.nativeCacheDir),
        });
      }
      let logFile: LogFile | undefined;
      const release = (discard = false) => {
        lock?.release({ discard });
        lock = undefined;
        logFile?.close();
        logFile = undefined;
      };
      const logPath = opts.logFile ?? kit.io.env.BPLS_LOG_FILE;
      if (logPath !== undefined && logPath !== '') {
        try {
          logFile = openLogFile(resolve(kit.io.cwd, logPath));
        } catch (err) {
          release();
          const f = fileError(err, { action: 'open', what: 'the log file', file: logPath });
          if (!f) throw err;
          // A usage error (exit 2) whatever the errno: the option names a file that cannot be had.
          throw new AppError('invalid_request', f.message, { ...f.details, usage: true }, f.hint);
        }
      }
      const file = logFile;
      const log: CountingLogger = createLogger({
        level: s.logLevel as LogLevel,
        write: file ? (t) => file.write(t) : kit.io.stderr,
        buffered: true,
      });
      // Whatever way the process ends, the queued request lines go out first.
      process.once('exit', log.flush);
      catchSignals(kit, log, () => logFile);
      let server;
      try {
        server = await startServer(
          {
            dataDir: g.dataDir,
            database: g.database,
            nativeCacheDir: g.nativeCacheDir,
            host: s.host,
            port: s.port,
            durability: g.durability,
            tlsCert: s.tlsCert,
            tlsKey: s.tlsKey,
            sweepIntervalSeconds: s.sweepIntervalSeconds,
            defaultLeaseTtlSeconds: s.defaultLeaseTtlSeconds,
            ...(sync ? { sync } : {}),
          },
          log,
        );
      } catch (err) {
        log.flush();
        // Refused at start: the data directory stays as it was, without a lock file of ours.
        release(true);
        throw err;
      }
      kit.io.stdout(`listening on ${server.url}\n`);
      log.info('server started', {
        url: server.url,
        server_id: server.ctx.info.server_id,
        data_dir: g.dataDir,
        ...(g.database ? { database: redactUrl(g.database) } : { durability: g.durability }),
        ...(logFile ? { log_file: logFile.path } : {}),
      });
      const signal = await (kit.io.stopSignal ?? new Promise<string>(() => {}));
      log.info('draining', { signal });
      await server.close();
      log.info('stopped', { ...(log.dropped() > 0 ? { log_lines_dropped: log.dropped() } : {}) });
      log.flush();
      release();
    });
}

/**
 * The first SIGTERM/SIGINT/SIGQUIT drains (kit.io.stopSignal resolves); any later one must not cut
 * the drain short. SIGHUP reopens the log file (logrotate); SIGUSR1/SIGUSR2 and the rest do
 * nothing (no inspector). Caught before the server starts: a SIGTERM while it starts stops it as
 * soon as it listens.
 */
function catchSignals(
  kit: CommandKit,
  log: CountingLogger,
  logFile: () => LogFile | undefined,
): void {
  let stopping: string | undefined;
  kit.io.onSignal?.((signal) => {
    if (signal === 'SIGTERM' || signal === 'SIGINT' || signal === 'SIGQUIT') {
      if (stopping)
        log.warn('signal ignored: already draining', { signal, draining_since: stopping });
      stopping = signal;
    } else if (signal === 'SIGHUP') {
      const file = logFile();
      if (!file) return log.info('signal ignored: no --log-file to reopen', { signal });
      try {
        file.reopen();
        log.info('log file reopened', { signal, path: file.path });
      } catch (err) {
        log.error('cannot reopen the log file; still writing to the one open', {
          signal,
          path: file.path,
          error: String(err),
        });
      }
    } else {
      log.info('signal ignored', { signal });
    }
  });
}

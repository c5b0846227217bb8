import type { Command } from 'commander';
import { resolve } from 'node:path';
import { resolveServe } from '../../config.ts';
import { startServer } from '../../server.ts';
import {
  createLogger,
  openLogFile,
  type CountingLogger,
  type LogFile,
  type LogLevel,
} from '../../log.ts';
import { AppError } from '../../errors.ts';
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
}

/** serve: listen until SIGTERM/SIGINT, then drain and exit 0. */
export function registerServe(program: Command, kit: CommandKit): void {
  // Set up by the preAction hook, which runs before the hooks other commands add to serve (the
  // sync folder watch): nothing of a second server starts before the lock says it is alone.
  let lock: DataDirLock | undefined;
  let logFile: LogFile | undefined;
  const release = (discard = false) => {
    lock?.release({ discard });
    lock = undefined;
    logFile?.close();
    logFile = undefined;
    kit.serveLog = undefined;
  };
  program
    .command('serve')
    .description(
      'serve the HTTP API; prints exactly one line "listening on http://HOST:PORT"; SIGTERM drains and exits 0',
    )
    .option('--host <host>', 'address to listen on (env BPLS_HOST)', undefined)
    .option('--port <port>', 'port; 0 picks a free one (env BPLS_PORT, default 8080)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--log-level <level>', 'debug, info, warn or error (env BPLS_LOG_LEVEL)')
    .option(
      '--log-file <file>',
      'append the log to FILE (created 0600) instead of stderr; SIGHUP reopens it (env BPLS_LOG_FILE)',
    )
    .option(
      '--sweep-interval <seconds>',
      'how often expired leases are marked for reports (env BPLS_SWEEP_INTERVAL, default 30)',
    )
    .option(
      '--lease-ttl <seconds>',
      'lease lifetime when the policy sets none (env BPLS_LEASE_TTL, default 3600)',
    )
    .hook('preAction', (_serve, actionCmd) => {
      const opts = actionCmd.opts() as ServeOpts;
      const g = kit.globals(actionCmd);
      const s = resolveServe(opts, kit.io.env);
      // A directory that is not initialised is refused by startServer, with its own message.
      // A read-only file system is refused as such (storage_unavailable), before the lock file is tried.
      if (initState(g.dataDir) !== 'none') {
        assertWritable(g.dataDir);
        lock = lockDataDir(g.dataDir, {
          role: 'serve',
          nativeBinding: loadSqliteBinding(g.nativeCacheDir),
        });
      }
      const logPath = opts.logFile ?? kit.io.env.BPLS_LOG_FILE;
      if (logPath !== undefined && logPath !== '') {
        try {
          logFile = openLogFile(resolve(kit.io.cwd, logPath));
        } catch (err) {
          release();
          throw new AppError(
            'invalid_request',
            `cannot open the log file ${logPath}: ${(err as Error).message}`,
            { usage: true },
          );
        }
      }
      const file = logFile;
      const serveLog = createLogger({
        level: s.logLevel as LogLevel,
        write: file ? (t) => file.write(t) : kit.io.stderr,
        buffered: true,
      });
      kit.serveLog = serveLog;
      // The first SIGTERM/SIGINT drains; any later one must not cut the drain short. SIGHUP
      // reopens the log file (logrotate); SIGUSR1/SIGUSR2 do nothing (no inspector). Caught from
      // here on: a SIGTERM while the server starts stops it as soon as it listens.
      let stopping: string | undefined;
      kit.io.onSignal?.((signal) => {
        if (signal === 'SIGTERM' || signal === 'SIGINT' || signal === 'SIGQUIT') {
          if (stopping)
            serveLog.warn('signal ignored: already draining', { signal, draining_since: stopping });
          stopping = signal;
        } else if (signal === 'SIGHUP') {
          if (!logFile) return serveLog.info('signal ignored: no --log-file to reopen', { signal });
          try {
            logFile.reopen();
            serveLog.info('log file reopened', { signal, path: logFile.path });
          } catch (err) {
            serveLog.error('cannot reopen the log file; still writing to the one open', {
              signal,
              path: logFile.path,
              error: String(err),
            });
          }
        } else {
          serveLog.info('signal ignored', { signal });
        }
      });
    })
    .action(async (opts: ServeOpts, cmd: Command) => {
      const g = kit.globals(cmd);
      const s = resolveServe(opts, kit.io.env);
      const log: CountingLogger =
        kit.serveLog ??
        createLogger({ level: s.logLevel as LogLevel, write: kit.io.stderr, buffered: true });
      // Whatever way the process ends, the queued request lines go out first.
      process.once('exit', log.flush);
      let server;
      try {
        server = await startServer(
          {
            dataDir: g.dataDir,
            nativeCacheDir: g.nativeCacheDir,
            host: s.host,
            port: s.port,
            durability: g.durability,
            tlsCert: s.tlsCert,
            tlsKey: s.tlsKey,
            sweepIntervalSeconds: s.sweepIntervalSeconds,
            defaultLeaseTtlSeconds: s.defaultLeaseTtlSeconds,
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
        durability: g.durability,
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

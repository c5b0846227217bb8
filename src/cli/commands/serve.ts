import type { Command } from 'commander';
import { resolveServe } from '../../config.ts';
import { startServer } from '../../server.ts';
import { createLogger, type LogLevel } from '../../log.ts';
import type { CommandKit } from '../main.ts';

/** serve: listen until SIGTERM/SIGINT, then drain and exit 0. */
export function registerServe(program: Command, kit: CommandKit): void {
  program
    .command('serve')
    .description('serve the HTTP API; prints exactly one line "listening on http://HOST:PORT"; SIGTERM drains and exits 0')
    .option('--host <host>', 'address to listen on (env BPLS_HOST)', undefined)
    .option('--port <port>', 'port; 0 picks a free one (env BPLS_PORT, default 8080)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--log-level <level>', 'debug, info, warn or error (env BPLS_LOG_LEVEL)')
    .option('--sweep-interval <seconds>', 'how often expired leases are marked for reports (env BPLS_SWEEP_INTERVAL, default 30)')
    .option('--lease-ttl <seconds>', 'lease lifetime when the policy sets none (env BPLS_LEASE_TTL, default 3600)')
    .action(async (opts: { host?: string; port?: string; tlsCert?: string; tlsKey?: string; logLevel?: string; sweepInterval?: string; leaseTtl?: string }, cmd: Command) => {
      const g = kit.globals(cmd);
      const s = resolveServe(opts, kit.io.env);
      const log = createLogger({ level: s.logLevel as LogLevel, write: kit.io.stderr, buffered: true });
      // Whatever way the process ends, the queued request lines go out first.
      process.once('exit', log.flush);
      const server = await startServer(
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
      kit.io.stdout(`listening on ${server.url}\n`);
      log.info('server started', { url: server.url, server_id: server.ctx.info.server_id, data_dir: g.dataDir, durability: g.durability });
      const signal = await (kit.io.stopSignal ?? new Promise<string>(() => {}));
      log.info('draining', { signal });
      await server.close();
      log.info('stopped', {});
      log.flush();
    });
}

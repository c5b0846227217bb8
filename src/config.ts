/**
 * The only reader of process.env. Flags > environment > defaults; every value is checked here so
 * the rest of the program can trust it.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { AppError } from './errors.ts';
import { defaultNativeCacheDir } from './storage/native.ts';
import { oneOf, parseWith } from './schemas.ts';
import { parseFlags } from './flag-errors.ts';
import { parseIntegerOption } from './integer-option.ts';
import type { Durability } from './storage/db.ts';

export type Env = Record<string, string | undefined>;

export interface GlobalFlags {
  dataDir?: string | undefined;
  database?: string | undefined;
  nativeCacheDir?: string | undefined;
  json?: boolean | undefined;
}

export interface GlobalConfig {
  dataDir: string;
  /** A PostgreSQL connection string (--database, BPLS_DATABASE_URL); undefined: SQLite in dataDir. */
  database: string | undefined;
  nativeCacheDir: string;
  durability: Durability;
  json: boolean;
}

const durabilitySchema = z.enum(['full', 'normal'], {
  message: 'BPLS_DURABILITY must be full or normal',
});

export function resolveGlobal(flags: GlobalFlags, env: Env, cwd: string): GlobalConfig {
  const dataDir = resolve(cwd, flags.dataDir ?? env.BPLS_DATA_DIR ?? './data');
  const cacheOverride = flags.nativeCacheDir ?? env.BPLS_NATIVE_CACHE_DIR;
  return {
    dataDir,
    database: databaseUrl(flags.database ?? env.BPLS_DATABASE_URL),
    nativeCacheDir:
      cacheOverride !== undefined
        ? resolve(cwd, cacheOverride)
        : defaultNativeCacheDir(env as NodeJS.ProcessEnv, dataDir),
    durability: parseWith(durabilitySchema, env.BPLS_DURABILITY ?? 'full', 'BPLS_DURABILITY'),
    json: flags.json ?? false,
  };
}

/**
 * --database / BPLS_DATABASE_URL: empty means SQLite; anything else must be a PostgreSQL URL.
 * @throws AppError `invalid_request` (usage) naming the option.
 */
function databaseUrl(v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  let u: URL | undefined;
  try {
    u = new URL(v);
  } catch {
    u = undefined;
  }
  // A Unix socket is named by ?host=/run/postgresql (no host part).
  const host = u?.hostname || u?.searchParams.get('host');
  if (!u || (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') || !host) {
    throw new AppError(
      'invalid_request',
      '--database (BPLS_DATABASE_URL) must be a PostgreSQL URL, postgres://user[:password]@host[:port]/database',
      { usage: true },
      'leave it unset for the embedded SQLite database in the data directory',
    );
  }
  return v;
}

export interface ServeFlags {
  host?: string | undefined;
  port?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  logLevel?: string | undefined;
  sweepInterval?: string | undefined;
  leaseTtl?: string | undefined;
}

const serveSchema = z.object({
  host: z.string().min(1).max(255),
  logLevel: oneOf('logLevel', ['debug', 'info', 'warn', 'error']),
});

/** A whole-number serve setting: the flag when given, else the environment variable, else the default. */
function servedInteger(
  flag: string | undefined,
  env: Env,
  spec: { flag: string; env: string; dflt: string; min: number; max: number; unit?: string },
): number {
  const fromFlag = flag !== undefined;
  return parseIntegerOption(fromFlag ? flag : (env[spec.env] ?? spec.dflt), {
    name: fromFlag || env[spec.env] === undefined ? spec.flag : spec.env,
    min: spec.min,
    max: spec.max,
    ...(spec.unit ? { unit: spec.unit } : {}),
  });
}

/** serve's defaults when neither a flag nor a variable sets one; --help shows these. */
export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  logLevel: 'info',
  sweepIntervalSeconds: 30,
  leaseTtlSeconds: 3600,
} as const;

export function resolveServe(flags: ServeFlags, env: Env) {
  const parsed = parseFlags(
    serveSchema,
    {
      host: flags.host ?? env.BPLS_HOST ?? SERVE_DEFAULTS.host,
      logLevel: flags.logLevel ?? env.BPLS_LOG_LEVEL ?? SERVE_DEFAULTS.logLevel,
    },
    'serve options',
    { host: '--host (or BPLS_HOST)', logLevel: '--log-level (or BPLS_LOG_LEVEL)' },
  );
  return {
    ...parsed,
    port: servedInteger(flags.port, env, {
      flag: '--port',
      env: 'BPLS_PORT',
      dflt: String(SERVE_DEFAULTS.port),
      min: 0,
      max: 65535,
    }),
    sweepIntervalSeconds: servedInteger(flags.sweepInterval, env, {
      flag: '--sweep-interval',
      env: 'BPLS_SWEEP_INTERVAL',
      dflt: String(SERVE_DEFAULTS.sweepIntervalSeconds),
      min: 1,
      max: 86_400,
      unit: 'seconds',
    }),
    defaultLeaseTtlSeconds: servedInteger(flags.leaseTtl, env, {
      flag: '--lease-ttl',
      env: 'BPLS_LEASE_TTL',
      dflt: String(SERVE_DEFAULTS.leaseTtlSeconds),
      min: 10,
      max: 30 * 86_400,
      unit: 'seconds',
    }),
    tlsCert: flags.tlsCert ?? env.BPLS_TLS_CERT,
    tlsKey: flags.tlsKey ?? env.BPLS_TLS_KEY,
  };
}

/** The sync folder when neither --sync-dir nor BPLS_SYNC_DIR names one: inside the data directory. */
export const DEFAULT_SYNC_DIR = 'sync-bundles';

/**
 * The sync folder and the outbound sync URL: flags > BPLS_SYNC_DIR / BPLS_SYNC_URL > defaults.
 * A folder named by the flag or the variable is taken as given (a relative one from `cwd`, as
 * every path on a command line); the default is `<dataDir>/sync-bundles`, so a command run from
 * another folder finds the same one the server watches.
 */
export function resolveSync(
  flags: { syncDir?: string | false | undefined; syncUrl?: string | undefined },
  env: Env,
  cwd: string,
  dataDir: string,
) {
  const named = flags.syncDir === false ? undefined : (flags.syncDir ?? env.BPLS_SYNC_DIR);
  return {
    /** Bundles come in at dir/inbox, exports go to dir/outbox. */
    dir: named !== undefined ? resolve(cwd, named) : resolve(dataDir, DEFAULT_SYNC_DIR),
    /** The folder was named by a flag or the environment, not taken by default. */
    named: named !== undefined,
    /** --no-sync-dir: watch no folder. */
    off: flags.syncDir === false,
    /** Unchecked: the outbound sync parses it. */
    url: flags.syncUrl ?? env.BPLS_SYNC_URL,
  };
}

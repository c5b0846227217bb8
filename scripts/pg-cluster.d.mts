/** A running throwaway PostgreSQL cluster (scripts/pg-cluster.mjs). */
export interface PgCluster {
  /** `postgres://bpls@127.0.0.1:<port>/postgres`: the superuser, trust authentication. */
  url: string;
  port: number;
  /** The temp dir: the data directory (`data/`), the Unix socket and `postgres.log`. */
  dir: string;
  /** Stops it (fast shutdown) and removes the dir. */
  stop(): Promise<void>;
  /** Stops it (fast; nothing to stop after kill()) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Immediate shutdown (a crash: no checkpoint); the data stays for restart(). */
  kill(): Promise<void>;
}

/** The newest /usr/lib/postgresql/<major>/bin with initdb and pg_ctl; throws naming the Debian package. */
export function findPgBin(root?: string): string;
/** initdb + pg_ctl start in a fresh temp dir, on 127.0.0.1 and a free port unless one is given. */
export function startCluster(options?: { port?: number; durable?: boolean }): Promise<PgCluster>;
/** CREATE DATABASE name ([a-z0-9_], 1-63 chars) on the cluster of `url`; the new database's URL. */
export function createDatabase(url: string, name: string): Promise<string>;

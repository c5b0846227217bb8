// A throwaway PostgreSQL cluster for the tests and the benchmarks: initdb into a fresh temp dir,
// a server on 127.0.0.1 and a free port, stopped and removed by its owner. Debian's packaged
// service (and any system cluster it started) is never used or touched: only the binaries.
//
// initdb and postgres refuse to run as root, so when we are root every binary runs as the
// `postgres` user (node's spawn uid/gid) in a temp dir chown'd to it; otherwise as ourselves.
// A small watchdog process stops the cluster and removes its dir if the process that started it
// dies without calling stop() (a killed test run must not leave a postmaster behind).
import { execFile, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  appendFileSync,
  chownSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const PG_ROOT = '/usr/lib/postgresql';
/** The user initdb and postgres run as when we are root (Debian's package creates it). */
const PG_USER = 'postgres';
/** The superuser initdb creates; every URL connects as it (trust authentication, 127.0.0.1 only). */
const SUPERUSER = 'bpls';
/** initdb, a start and a stop each finish in a few seconds; longer means something is wrong. */
const COMMAND_TIMEOUT_MS = 120_000;

/**
 * The bin directory of the newest installed PostgreSQL (`/usr/lib/postgresql/<major>/bin`, as
 * Debian's `postgresql` package lays it out) that has both `initdb` and `pg_ctl`.
 *
 * @param {string} [root] where the versions are (tests point it at an empty dir)
 * @returns {string} an absolute directory path
 * @throws {Error} when no such directory exists, naming the Debian package to install
 */
export function findPgBin(root = PG_ROOT) {
  let majors = [];
  try {
    majors = readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    // no PostgreSQL at all: the error below says what to install
  }
  majors.sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const bin = join(root, major, 'bin');
    if (isExecutable(join(bin, 'initdb')) && isExecutable(join(bin, 'pg_ctl'))) return bin;
  }
  throw new Error(
    `PostgreSQL server binaries not found (no ${root}/<version>/bin with initdb and pg_ctl): ` +
      `install the Debian package postgresql (apt-get install -y postgresql)`,
  );
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The uid/gid the binaries run as: the postgres user's when we are root, else none (ourselves). */
function runAs() {
  if (process.getuid?.() !== 0) return {};
  const id = (flag) => {
    try {
      return Number(execFileSync('id', [flag, PG_USER], { encoding: 'utf8' }).trim());
    } catch {
      throw new Error(
        `running as root, but there is no ${PG_USER} user to run initdb and postgres as ` +
          `(they refuse root): install the Debian package postgresql, which creates it`,
      );
    }
  };
  return { uid: id('-u'), gid: id('-g') };
}

/** A port on 127.0.0.1 that nothing listens on right now (the kernel picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Runs one PostgreSQL binary to completion as the cluster's user, with a minimal environment (no
 * PG* variable of ours can redirect it), and fails with its output when it fails.
 */
function run(bin, args, { cwd, user }) {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      {
        cwd,
        ...user,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
        timeout: COMMAND_TIMEOUT_MS,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      },
    );
  });
}

/**
 * Starts a PostgreSQL cluster of its own: `initdb -A trust -U bpls --no-sync` (UTF8, locale C, so
 * text sorts bytewise as SQLite's BINARY collation does) into a fresh temp dir, then `pg_ctl -w
 * start` listening on 127.0.0.1 only, its Unix socket in the temp dir, durable commits (fsync and
 * synchronous_commit on), max_connections 200, shared_buffers 128MB, its log in
 * `<dir>/postgres.log`.
 *
 * @param {{ port?: number }} [options] port: the TCP port (default: a free one)
 * @returns {Promise<import('./pg-cluster.d.mts').PgCluster>} `url` is
 *   `postgres://bpls@127.0.0.1:<port>/postgres`; `stop()` stops it (fast) and removes the dir;
 *   `restart()` stops it (fast, or finds it stopped after `kill()`) and starts it again, same port
 *   and data; `kill()` stops it in immediate mode (a crash: no shutdown checkpoint), the data kept
 *   for a `restart()`.
 * @param {{ port?: number, durable?: boolean }} [options] durable (default true): fsync on.
 * @throws {Error} PostgreSQL missing (see findPgBin), or initdb/start failed (with their output
 *   and the server log)
 */
export async function startCluster({ port, durable = true } = {}) {
  const bin = findPgBin();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'bpls-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'postgres.log');
  const pgCtl = join(bin, 'pg_ctl');
  const opts = { cwd: dir, user };
  let watchdog;
  let running = false;
  try {
    if (user.uid !== undefined) chownSync(dir, user.uid, user.gid);
    const chosen = port ?? (await freePort());
    await run(
      join(bin, 'initdb'),
      ['-D', data, '-A', 'trust', '-U', SUPERUSER, '--no-sync', '-E', 'UTF8', '--locale=C'],
      opts,
    );
    // In the cluster's own config, so restart() starts it exactly as start did (pg_ctl -o would
    // go through a shell command line and be forgotten by a plain restart).
    appendFileSync(
      join(data, 'postgresql.conf'),
      [
        '',
        '# bp-license-server test cluster (scripts/pg-cluster.mjs)',
        "listen_addresses = '127.0.0.1'",
        `port = ${chosen}`,
        `unix_socket_directories = '${dir}'`,
        // durable false: a throwaway cluster whose data no test needs after a power cut (the test
        // run's shared one); commits then skip the disk flush. PostgreSQL's own crash tests start
        // a durable cluster of their own.
        `fsync = ${durable ? 'on' : 'off'}`,
        'synchronous_commit = on',
        'max_connections = 200',
        'shared_buffers = 128MB',
        '',
      ].join('\n'),
    );
    const start = async () => {
      try {
        await run(pgCtl, ['-D', data, '-l', log, '-w', '-t', '60', 'start'], opts);
      } catch (err) {
        throw new Error(`${err.message}\nserver log:\n${tail(log)}`);
      }
      running = true;
    };
    const stopWith = async (mode) => {
      if (!running) return;
      await run(pgCtl, ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], opts);
      running = false;
    };
    await start();
    watchdog = startWatchdog({ pgCtl, data, dir, user });
    return {
      url: `postgres://${SUPERUSER}@127.0.0.1:${chosen}/postgres`,
      port: chosen,
      dir,
      async stop() {
        try {
          await stopWith('fast');
        } finally {
          endWatchdog(watchdog);
          rmSync(dir, { recursive: true, force: true });
        }
      },
      async restart() {
        await stopWith('fast');
        await start();
      },
      async kill() {
        await stopWith('immediate');
      },
    };
  } catch (err) {
    if (running)
      await run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], opts).catch(() => {});
    endWatchdog(watchdog);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * A detached process that polls for its parent every half second and, once the parent is gone,
 * stops the cluster (immediate) and removes its dir. stop() ends it first, by pid.
 */
function startWatchdog({ pgCtl, data, dir, user }) {
  const script = `
    const { execFileSync } = require('node:child_process');
    const { rmSync } = require('node:fs');
    const [parent, pgCtl, data, dir, uid, gid] = process.argv.slice(1);
    const user = uid ? { uid: Number(uid), gid: Number(gid) } : {};
    const timer = setInterval(() => {
      try { process.kill(Number(parent), 0); return; } catch {}
      clearInterval(timer);
      try { execFileSync(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], { cwd: dir, stdio: 'ignore', ...user }); } catch {}
      rmSync(dir, { recursive: true, force: true });
    }, 500);
  `;
  const child = spawn(
    process.execPath,
    [
      '-e',
      script,
      String(process.pid),
      pgCtl,
      data,
      dir,
      String(user.uid ?? ''),
      String(user.gid ?? ''),
    ],
    { detached: true, stdio: 'ignore' },
  );
  child.unref();
  return child;
}

function endWatchdog(child) {
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    // gone already
  }
}

/**
 * Creates an empty database on the cluster `url` points at.
 *
 * @param {string} url a superuser's URL on the cluster (startCluster's `url`)
 * @param {string} name the new database's name: lower-case letters, digits and `_`, at most 63
 *   characters (PostgreSQL's identifier limit), so it needs no quoting
 * @returns {Promise<string>} the URL of the new database (same server and user, that database)
 * @throws {Error} a name outside that alphabet or length; the server's error (e.g. the name taken)
 */
export async function createDatabase(url, name) {
  if (!/^[a-z0-9_]{1,63}$/.test(name)) {
    throw new Error(
      `database name ${JSON.stringify(name)} must be 1-63 characters of a-z, 0-9 and _`,
    );
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const next = new URL(url);
  next.pathname = `/${name}`;
  return next.toString();
}

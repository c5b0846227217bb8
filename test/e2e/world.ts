/**
 * What the end-to-end tests share: dates in the API's form, a data directory made by the real CLI
 * (`init`, `entitlements create`, `vendor keygen`), copies of it, a worker pool, and the afterAll
 * that stops the servers a file started.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { CLI, killStrays, runProcess, startServe, type ServeHandle } from '../spawn.ts';

export const YEAR_MS = 365 * 24 * 3600 * 1000;

/** RFC 3339 UTC to the second, the API's time format. */
export const rfc3339 = (ms: number): string =>
  new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** What `init --json` prints (the fields the tests use). */
export interface InitAnswer {
  admin_token: string;
  server_id: string;
  public_key: string;
}

/** The CLI run to its end in `cwd` (60 s at most). */
const cli = (cwd: string, args: string[]) => runProcess(CLI, args, { cwd, timeoutMs: 60_000 });

/**
 * `init --data-dir <dataDir> --json` plus `extra` (e.g. `--vendor-key`), by the real CLI in `cwd`.
 * Fails the test unless it exits 0.
 */
export async function initDataDir(
  cwd: string,
  dataDir: string,
  extra: string[] = [],
): Promise<InitAnswer> {
  const init = await cli(cwd, ['init', '--data-dir', dataDir, ...extra, '--json']);
  expect(init.code, init.stderr).toBe(0);
  return JSON.parse(init.stdout) as InitAnswer;
}

/**
 * `entitlements create` of a concurrent entitlement with `maxSeats` seats for tenant `t` and
 * product `p`, active from a year ago to a year ahead. Returns its id (`ent_…`).
 */
export async function createConcurrent(
  cwd: string,
  dataDir: string,
  maxSeats: number,
): Promise<string> {
  const created = await cli(
    cwd,
    // prettier-ignore
    ['entitlements', 'create', '--tenant', 't', '--product', 'p', '--type', 'concurrent', '--max-seats', String(maxSeats),
      '--starts', rfc3339(Date.now() - YEAR_MS), '--ends', rfc3339(Date.now() + YEAR_MS), '--data-dir', dataDir, '--json'],
  );
  expect(created.code, created.stderr + created.stdout).toBe(0);
  const id = (JSON.parse(created.stdout) as { entitlement_id: string }).entitlement_id;
  expect(id).toMatch(/^ent_/);
  return id;
}

/** `vendor keygen --out <dir>`: the vendor's key pair (the public PASERK and the secret key's file). */
export async function vendorKeygen(
  cwd: string,
  dir: string,
): Promise<{ public_key: string; secret_key_file: string }> {
  const r = await cli(cwd, ['vendor', 'keygen', '--out', dir, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { public_key: string; secret_key_file: string };
}

/**
 * The arguments of `vendor sign`: the bundle number `seq` for `serverId`, signed with the secret
 * key file `key`, from the content file `in` (and the previous bundle `prev`) to `out`.
 */
export function vendorSignArgs(o: {
  key: string;
  serverId: string;
  seq: number;
  in: string;
  out: string;
  prev?: string;
}): string[] {
  return [
    'vendor',
    'sign',
    '--key',
    o.key,
    '--server-id',
    o.serverId,
    '--seq',
    String(o.seq),
    ...(o.prev === undefined ? [] : ['--prev', o.prev]),
    '--in',
    o.in,
    '--out',
    o.out,
  ];
}

/** Copies a data directory's database and identity files from `template` into a new folder `dir`. */
export function copyDataDir(template: string, dir: string): string {
  mkdirSync(dir);
  for (const f of ['license.db', 'server.key', 'server.json'])
    copyFileSync(path.join(template, f), path.join(dir, f));
  return dir;
}

/** Runs fn over items with `width` workers at once. */
export async function pool<T>(
  items: readonly T[],
  width: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** For afterAll: stops (SIGTERM, waits) every server still running, then kills any child left. */
export async function stopAll(servers: readonly ServeHandle[]): Promise<void> {
  for (const s of servers)
    if (s.child.exitCode === null && s.child.signalCode === null) await s.stop();
  killStrays();
}

/** A fresh data directory in a temp folder with `serve` running on it (see servedDataDir). */
export interface Served {
  root: string;
  dataDir: string;
  /** The admin token `init` printed. */
  token: string;
  server: ServeHandle;
  /** Stops the server (if it still runs), kills strays, removes the folder. */
  close(): Promise<void>;
}

/** `init` in a new temp folder, then `serve --port 0` on it by the real CLI (for one test file). */
export async function servedDataDir(prefix: string): Promise<Served> {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  const dataDir = path.join(root, 'data');
  const token = (await initDataDir(root, dataDir)).admin_token;
  const server = await startServe(CLI, ['--data-dir', dataDir, '--port', '0'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  return {
    root,
    dataDir,
    token,
    server,
    async close() {
      if (server.child.exitCode === null && server.child.signalCode === null) await server.stop();
      killStrays();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

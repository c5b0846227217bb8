// Full and read-only storage under the real server (dist/cli.cjs), on real file systems: a small
// tmpfs filled by a filler file, and an ext4 image on a loop device that the kernel turns
// read-only on an error (errors=remount-ro), as a failing disk does. Needs root (mount, losetup);
// each part is skipped with a printed reason where the machine does not allow it.
//
// What it proves: writes answer 507 storage_full / 503 storage_unavailable with the envelope and
// Retry-After (never 500, no stack in the log), reads keep working, /readyz turns 503 with the
// condition and back to 200 when a write commits again, one warn line per episode and one info
// line at its end, nothing of a refused write is in the database, and the WAL that grew against the
// full disk is cut once space is back, also across a restart on the full disk.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { CLI, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { createConcurrent, initDataDir, stopAll } from './world.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let root: string;
const mounts: string[] = [];
const loops: string[] = [];
const servers: ServeHandle[] = [];

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Mounts a tmpfs of `mb` MiB at dir; the reason it cannot, or undefined. */
function mountTmpfs(dir: string, mb: number): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    sh('mount', ['-t', 'tmpfs', '-o', `size=${mb}M,mode=0700`, 'tmpfs', dir]);
    mounts.unshift(dir);
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs (${String((err as Error).message).split('\n')[0]})`;
  }
}

/**
 * A 16 MiB tmpfs at <root>/<name> and the data directory's path on it; where the machine cannot
 * mount one, the test is skipped with the reason printed.
 */
function smallTmpfsOrSkip(ctx: TestContext, name: string): { mnt: string; dataDir: string } {
  const mnt = path.join(root, name);
  const why = mountTmpfs(mnt, 16);
  if (why) {
    console.log(`skipped: ${why}`);
    ctx.skip();
  }
  return { mnt, dataDir: path.join(mnt, 'data') };
}

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-storage-'));
});

afterAll(async () => {
  await stopAll(servers);
  for (const m of mounts) {
    try {
      sh('umount', [m]);
    } catch {
      sh('umount', ['-l', m]);
    }
  }
  for (const l of loops) {
    try {
      sh('losetup', ['-d', l]);
    } catch {
      /* already gone */
    }
  }
  rmSync(root, { recursive: true, force: true });
});

/** init + one entitlement with room for every grant the test makes; returns the admin token. */
async function prepare(dataDir: string): Promise<string> {
  const { admin_token: token } = await initDataDir(root, dataDir);
  await createConcurrent(root, dataDir, 1_000_000);
  return token;
}

async function serve(dataDir: string): Promise<ServeHandle> {
  const s = await startServe(CLI, ['--data-dir', dataDir, '--host', '127.0.0.1', '--port', '0'], {
    cwd: root,
    timeoutMs: 60_000,
  });
  servers.push(s);
  return s;
}

interface Answer {
  status: number;
  body: any;
  retryAfter: string | null;
}

async function grant(base: string, subject: string): Promise<Answer> {
  const res = await fetch(`${base}/v1/license/lease`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      product_id: 'p',
      tenant_id: 't',
      subject_type: 'user',
      subject_id: subject,
    }),
  });
  return { status: res.status, body: await res.json(), retryAfter: res.headers.get('retry-after') };
}

async function getJson(url: string, token?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, body: await res.json() };
}

/**
 * Grants with 8 at once until `stop` says so (or `max` requests); every answer is recorded by
 * subject. A refused batch must leave nothing, so each subject is asked once.
 */
async function grantStorm(
  base: string,
  prefix: string,
  max: number,
  stop: (a: Answer) => boolean,
): Promise<Map<string, Answer>> {
  const answers = new Map<string, Answer>();
  let n = 0;
  let stopped = false;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (!stopped && n < max) {
        const subject = `${prefix}${n++}`;
        const a = await grant(base, subject);
        answers.set(subject, a);
        if (stop(a)) stopped = true;
      }
    }),
  );
  return answers;
}

/** Fills the file system holding dir to the last byte but `leave`; returns the filler's path. */
function fill(dir: string, leave = 0): string {
  const file = path.join(dir, 'filler.bin');
  const fd = openSync(file, 'a');
  try {
    for (const size of [1 << 20, 64 << 10, 4 << 10, 512]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
    if (leave > 0) ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leave));
  } finally {
    closeSync(fd);
  }
  return file;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function logLines(s: ServeHandle): Array<Record<string, unknown>> {
  return s
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function walBytes(dbFile: string): number {
  return existsSync(`${dbFile}-wal`) ? statSync(`${dbFile}-wal`).size : 0;
}

/** Subjects with a lease row, and the entitlement counter against the active rows. */
function leasesInDb(dbFile: string): { subjects: Set<string>; active: number; counter: number } {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const subjects = new Set(
      (db.prepare('SELECT subject_id FROM leases').pluck().all() as string[]).map(String),
    );
    const active = db
      .prepare("SELECT count(*) FROM leases WHERE state = 'active'")
      .pluck()
      .get() as number;
    const counter =
      (db
        .prepare('SELECT coalesce(sum(active_leases), 0) FROM entitlement_counters')
        .pluck()
        .get() as number) ?? 0;
    return { subjects, active, counter };
  } finally {
    db.close();
  }
}

describe('a full disk (tmpfs)', () => {
  it(
    'answers 507 storage_full, keeps reading, turns /readyz 503, logs one line, and recovers',
    { timeout: 180_000 },
    async (ctx) => {
      const { mnt, dataDir } = smallTmpfsOrSkip(ctx, 'tmpfs');
      const dbFile = path.join(dataDir, 'license.db');
      const token = await prepare(dataDir);
      const server = await serve(dataDir);

      // Writable: grants work.
      const before = await grantStorm(server.base, 'a', 50, () => false);
      expect([...before.values()].every((a) => a.status === 201)).toBe(true);

      // The disk fills while the server grants.
      const filler = fill(mnt);
      const storm = await grantStorm(server.base, 'b', 20_000, (a) => a.status === 507);
      // A few more once it refuses: refused again, and logged no more.
      for (const [k, v] of await grantStorm(server.base, 'c', 40, () => false)) storm.set(k, v);
      const statuses = new Set([...storm.values()].map((a) => a.status));
      expect(
        [...statuses].filter((s) => s !== 201 && s !== 507),
        JSON.stringify([...storm.values()].find((a) => a.status !== 201 && a.status !== 507)),
      ).toEqual([]);
      const refused = [...storm].filter(([, a]) => a.status === 507);
      expect(refused.length).toBeGreaterThan(0);
      const r = refused[0]![1];
      expect(r.body.error).toMatchObject({
        code: 'storage_full',
        message: expect.stringContaining('full'),
        request_id: expect.any(String),
      });
      expect(r.retryAfter).toBe('30');

      // Reads keep working; readiness says why it is not ready; the gauge says so too.
      const list = await getJson(`${server.base}/v1/entitlements?limit=5`, token);
      expect(list.status).toBe(200);
      expect(list.body.data.length).toBe(1);
      const ready = await getJson(`${server.base}/readyz`);
      expect(ready).toEqual({ status: 503, body: { status: 'storage_full' } });
      const metrics = await (await fetch(`${server.base}/metrics`)).text();
      expect(metrics).toMatch(/^bpls_storage_writable 0$/m);
      expect(metrics).toMatch(/^bpls_storage_full 1$/m);

      // One warn line for the episode, no stack, no 500.
      const lines = logLines(server);
      const warns = lines.filter((l) => l.level === 'warn' || l.level === 'error');
      expect(warns.map((l) => l.msg)).toEqual([expect.stringContaining('storage not writable')]);
      // What SQLite really says when a tmpfs is full.
      expect(warns[0]).toMatchObject({ code: 'storage_full', cause: 'SQLITE_FULL' });
      expect(lines.filter((l) => l.msg === 'request' && l.status === 500)).toEqual([]);
      const walAtFull = walBytes(dbFile);
      expect(walAtFull).toBeGreaterThan(0);

      // Space comes back: readiness, then writes, then the WAL is cut.
      rmSync(filler);
      await until('/readyz 200', async () =>
        (await getJson(`${server.base}/readyz`)).status === 200 ? true : undefined,
      );
      // The end of the episode has the WAL copied and cut to zero.
      await until(`the WAL cut (${walAtFull} bytes when full)`, async () =>
        walBytes(dbFile) === 0 ? true : undefined,
      );
      const after = await grantStorm(server.base, 'd', 50, () => false);
      expect([...after.values()].every((a) => a.status === 201)).toBe(true);
      expect(logLines(server).filter((l) => l.msg === 'storage writable again')).toEqual([
        expect.objectContaining({ level: 'info', code: 'storage_full' }),
      ]);

      // Nothing of a refused grant is in the database; every granted one is.
      await server.stop();
      const db = leasesInDb(dbFile);
      for (const [subject, a] of [...before, ...storm, ...after]) {
        expect(db.subjects.has(subject), `${subject} answered ${a.status}`).toBe(a.status === 201);
      }
      expect(db.counter).toBe(db.active);
    },
  );

  it(
    'restarts on a disk its WAL filled (a long reader held it), not ready, and recovers when space returns',
    { timeout: 180_000 },
    async (ctx) => {
      const { mnt, dataDir } = smallTmpfsOrSkip(ctx, 'tmpfs2');
      const dbFile = path.join(dataDir, 'license.db');
      await prepare(dataDir);
      const first = await serve(dataDir);
      const filler = fill(mnt, 4 << 20);
      // A reader holding its snapshot (a long backup, say): no checkpoint can pass it, the WAL grows
      // until it fills the disk.
      const reader = new Database(dbFile, { readonly: true, fileMustExist: true });
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM leases').get();
      await grantStorm(first.base, 'a', 50_000, (a) => a.status === 507);
      // SIGKILL: the WAL stays as the full disk left it.
      first.child.kill('SIGKILL');
      await first.exited;
      reader.close();
      const walLeft = walBytes(dbFile);
      expect(walLeft).toBeGreaterThan(2 << 20);

      // It starts, says it is not ready (under 1 MiB free), serves reads. A write may get through
      // (the checkpoint at start may give some of the WAL's space back) or get 507: never anything else.
      const second = await serve(dataDir);
      expect((await getJson(`${second.base}/readyz`)).body).toEqual({ status: 'storage_full' });
      expect((await getJson(`${second.base}/healthz`)).status).toBe(200);
      expect((await getJson(`${second.base}/v1/license/keys`)).status).toBe(200);
      const x1 = await grant(second.base, 'x1');
      expect([201, 507]).toContain(x1.status);
      if (x1.status === 507) expect(x1.body.error.code).toBe('storage_full');

      rmSync(filler);
      await until('/readyz 200', async () =>
        (await getJson(`${second.base}/readyz`)).status === 200 ? true : undefined,
      );
      await until(`the WAL cut (${walLeft} bytes left by the full disk)`, async () =>
        walBytes(dbFile) === 0 ? true : undefined,
      );
      expect((await grant(second.base, 'x2')).status).toBe(201);
      const lines = logLines(second);
      // Besides the storage episode, at most the start-up note about a WAL the full disk cut mid-frame
      // (it names where a copy was kept, or that none could be: the disk was full).
      const startupNotes = lines.filter((l) => l.migration === 'startup');
      expect(startupNotes.length).toBeLessThanOrEqual(1);
      for (const n of startupNotes)
        expect(n.msg).toMatch(/license\.db-wal ends in a partial frame/);
      expect(
        lines
          .filter((l) => (l.level === 'warn' || l.level === 'error') && l.migration !== 'startup')
          .map((l) => l.code),
      ).toEqual(['storage_full']);
      expect(lines.filter((l) => l.msg === 'storage writable again')).toHaveLength(1);
      expect(await second.stop()).toEqual({ code: 0, signal: null });
      const db = leasesInDb(dbFile);
      expect(db.subjects.has('x1')).toBe(x1.status === 201);
      expect(db.subjects.has('x2')).toBe(true);
      expect(db.counter).toBe(db.active);
    },
  );
});

describe('stopping on a full disk', () => {
  it(
    'SIGTERM still drains and exits 0 (its last checkpoint fails quietly); the next start on free space serves',
    { timeout: 180_000 },
    async (ctx) => {
      const { mnt, dataDir } = smallTmpfsOrSkip(ctx, 'tmpfs3');
      await prepare(dataDir);
      const first = await serve(dataDir);
      const filler = fill(mnt);
      const storm = await grantStorm(first.base, 'a', 20_000, (a) => a.status === 507);
      expect([...storm.values()].some((a) => a.status === 507)).toBe(true);
      expect(await first.stop()).toEqual({ code: 0, signal: null });
      expect(logLines(first).filter((l) => l.level === 'error')).toEqual([]);
      expect(logLines(first).at(-1)).toMatchObject({ msg: 'stopped' });

      rmSync(filler);
      const second = await serve(dataDir);
      expect(await getJson(`${second.base}/readyz`)).toEqual({
        status: 200,
        body: { status: 'ready' },
      });
      expect((await grant(second.base, 'b1')).status).toBe(201);
      expect(await second.stop()).toEqual({ code: 0, signal: null });
      const db = leasesInDb(path.join(dataDir, 'license.db'));
      for (const [subject, a] of storm)
        expect(db.subjects.has(subject), `${subject} answered ${a.status}`).toBe(a.status === 201);
      expect(db.subjects.has('b1')).toBe(true);
    },
  );
});

describe('read-only storage (ext4 remounted read-only on an error)', () => {
  it(
    'answers 503 storage_unavailable with Retry-After, keeps reading, /readyz 503, one log line',
    { timeout: 180_000 },
    async (ctx) => {
      const host = path.join(root, 'img');
      const mnt = path.join(root, 'ext4');
      let device: string | undefined;
      let why = mountTmpfs(host, 48);
      if (!why) {
        try {
          sh('truncate', ['-s', '32M', path.join(host, 'fs.img')]);
          sh('mkfs.ext4', ['-q', '-F', path.join(host, 'fs.img')]);
          device = sh('losetup', ['-f', '--show', path.join(host, 'fs.img')]).trim();
          loops.unshift(device);
          mkdirSync(mnt, { recursive: true });
          sh('mount', ['-o', 'errors=remount-ro', device, mnt]);
          mounts.unshift(mnt);
        } catch (err) {
          why = `cannot make an ext4 file system on a loop device (${String((err as Error).message).split('\n')[0]})`;
        }
      }
      const trigger = device ? `/sys/fs/ext4/${path.basename(device)}/trigger_fs_error` : '';
      if (!why && !existsSync(trigger)) why = `the kernel has no ${trigger}`;
      if (why) {
        console.log(`skipped: ${why}`);
        ctx.skip();
      }
      const dataDir = path.join(mnt, 'data');
      const token = await prepare(dataDir);
      const server = await serve(dataDir);
      expect((await grant(server.base, 'a1')).status).toBe(201);

      // The kernel turns the file system read-only under the running server.
      sh('sh', ['-c', `echo 1 > ${trigger}`]);
      const storm = await grantStorm(server.base, 'b', 200, () => false);
      const answers = [...storm.values()];
      expect(new Set(answers.map((a) => a.status))).toEqual(new Set([503]));
      expect(answers[0]!.body.error).toMatchObject({
        code: 'storage_unavailable',
        request_id: expect.any(String),
      });
      expect(answers[0]!.retryAfter).toBe('30');

      expect((await getJson(`${server.base}/v1/entitlements?limit=5`, token)).status).toBe(200);
      expect(await getJson(`${server.base}/readyz`)).toEqual({
        status: 503,
        body: { status: 'storage_unavailable' },
      });
      const lines = logLines(server);
      const warns = lines.filter((l) => l.level === 'warn' || l.level === 'error');
      // What SQLite says when the kernel turned the file system read-only (EROFS on write).
      expect(warns).toEqual([
        expect.objectContaining({
          level: 'warn',
          code: 'storage_unavailable',
          cause: expect.stringMatching(/^SQLITE_(IOERR|READONLY)/),
        }),
      ]);
      expect(lines.filter((l) => l.msg === 'request' && l.status === 500)).toEqual([]);

      // It still stops cleanly.
      expect(await server.stop()).toEqual({ code: 0, signal: null });
    },
  );
});

describe('read-only storage at start (a read-only bind mount)', () => {
  it(
    'serve refuses with storage_unavailable and a clear message, and changes nothing',
    { timeout: 120_000 },
    async (ctx) => {
      const src = path.join(root, 'ro-src');
      const mnt = path.join(root, 'ro');
      await prepare(path.join(src, 'data'));
      mkdirSync(mnt, { recursive: true });
      let why: string | undefined;
      try {
        sh('mount', ['--bind', src, mnt]);
        mounts.unshift(mnt);
        sh('mount', ['-o', 'remount,ro,bind', mnt]);
      } catch (err) {
        why = `cannot make a read-only bind mount (${String((err as Error).message).split('\n')[0]})`;
      }
      if (why) {
        console.log(`skipped: ${why}`);
        ctx.skip();
      }
      const before = readdirSync(path.join(src, 'data')).sort();
      const r = await runProcess(
        CLI,
        ['serve', '--data-dir', path.join(mnt, 'data'), '--host', '127.0.0.1', '--port', '0'],
        { cwd: root, timeoutMs: 60_000 },
      );
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('storage_unavailable');
      expect(r.stderr).toMatch(/read-only/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
      expect(readdirSync(path.join(src, 'data')).sort()).toEqual(before);
    },
  );
});

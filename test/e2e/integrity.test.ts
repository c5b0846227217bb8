// Damaged data directories and file modes (issue 11, faults 5, 6 and 7), with the real CLI.
// Every refusal: exit 1, error[code] and a message naming the check, a hint, and not one byte
// of the data directory changed or created.
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe } from '../spawn.ts';
import { loadIdentity } from '../../src/data-dir.ts';
import { openStore } from '../../src/storage/store.ts';
import { createServices } from '../../src/context.ts';
import { systemClock } from '../../src/clock.ts';
import { startServer } from '../../src/server.ts';
import { silentLogger } from '../../src/log.ts';
import { AppError } from '../../src/errors.ts';

let root: string;
/** A real server: three-seat entitlement, tokens, 3,000 leases (hundreds of b-tree pages). Copied per case, never used directly. */
let golden: string;
let other: string;
let entitlementId: string;

const cli = (args: string[], dir: string, opts: { cwd?: string } = {}) =>
  runProcess(CLI, [...args, '--data-dir', dir], { cwd: opts.cwd ?? root });
const ok = async (args: string[], dir: string) => {
  const r = await cli([...args, '--json'], dir);
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
};

/** Every file in the folder: name, mode, size and content hash. "Nothing changed" is this staying equal. */
function listing(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    const st = statSync(path.join(dir, f));
    out[f] = `${(st.mode & 0o777).toString(8)} ${st.size} ${
      st.isFile()
        ? createHash('sha256')
            .update(readFileSync(path.join(dir, f)))
            .digest('hex')
        : 'dir'
    }`;
  }
  return out;
}

let n = 0;
function copyOf(src: string): string {
  const dir = path.join(root, `case-${++n}`);
  cpSync(src, dir, { recursive: true });
  return dir;
}

const mode = (f: string) => statSync(f).mode & 0o777;
const json = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'server.json'), 'utf8'));
const writeJson = (dir: string, v: unknown) =>
  writeFileSync(path.join(dir, 'server.json'), `${JSON.stringify(v, null, 2)}\n`, { mode: 0o600 });

/**
 * Overwrites 256 bytes of one leaf page of the leases table, in the middle of the file (never
 * page 1): at the page's start (its b-tree header and cell pointers) or in its cells.
 */
function corruptLeasesPage(
  dir: string,
  at: 'header' | 'cells' = 'header',
): { page: number; pageSize: number } {
  const file = path.join(dir, 'license.db');
  // Read-write, so that closing removes the -wal and -shm files (a read-only connection leaves them).
  const db = new Database(file);
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db
    .prepare(
      "SELECT pageno FROM dbstat WHERE name = 'leases' AND pagetype = 'leaf' ORDER BY pageno",
    )
    .pluck()
    .all() as number[];
  db.close();
  expect(pages.length).toBeGreaterThan(20);
  const page = pages[Math.floor(pages.length / 2)]!;
  const fd = openSync(file, 'r+');
  writeSync(
    fd,
    randomBytes(256),
    0,
    256,
    (page - 1) * pageSize + (at === 'header' ? 0 : pageSize / 2),
  );
  closeSync(fd);
  return { page, pageSize };
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-integrity-'));
  golden = path.join(root, 'golden');
  other = path.join(root, 'other');
  await ok(['init'], golden);
  await ok(['init'], other);
  const e = await ok(
    [
      'entitlements',
      'create',
      '--tenant',
      'acme',
      '--product',
      'cad',
      '--type',
      'concurrent',
      '--max-seats',
      '3',
      '--starts',
      '2024-01-01T00:00:00Z',
      '--ends',
      '2099-01-01T00:00:00Z',
    ],
    golden,
  );
  entitlementId = e.entitlement_id;
  const big = await ok(
    [
      'entitlements',
      'create',
      '--tenant',
      'acme',
      '--product',
      'big',
      '--type',
      'concurrent',
      '--max-seats',
      '100000',
      '--starts',
      '2024-01-01T00:00:00Z',
      '--ends',
      '2099-01-01T00:00:00Z',
    ],
    golden,
  );
  const { info, key } = loadIdentity(golden);
  const store = openStore(path.join(golden, 'license.db'), { mustExist: true });
  try {
    const services = createServices(store, systemClock, key, info);
    const grants = [];
    for (let i = 0; i < 3000; i++)
      grants.push(
        services.leases.grant({
          tenantId: 'acme',
          productId: 'big',
          subjectType: 'machine',
          subjectId: `host-${i}`,
          entitlementId: big.entitlement_id,
        }),
      );
    await Promise.all(grants);
  } finally {
    store.close();
  }
  expect(readdirSync(golden).sort()).toEqual(['license.db', 'server.json', 'server.key']);
}, 120_000);

afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

interface Damage {
  name: string;
  damage(dir: string): void;
  code: string;
  message: RegExp;
}

const damages: Damage[] = [
  {
    name: 'server.json without server_id',
    damage: (dir) => {
      const { server_id: _, ...rest } = json(dir);
      writeJson(dir, rest);
    },
    code: 'conflict',
    message:
      /server identity in .* is inconsistent: server\.json server_id must be a string; refusing to start/,
  },
  {
    name: 'server.json with an edited kid',
    damage: (dir) => writeJson(dir, { ...json(dir), kid: json(other).kid }),
    code: 'conflict',
    message: /server\.json kid k4\.pid\..* is not the key id of its public_key/,
  },
  {
    name: 'server.json with a malformed server_id, no created_at and an unknown field',
    damage: (dir) => {
      const { created_at: _, ...rest } = json(dir);
      writeJson(dir, { ...rest, server_id: 'srv_x', extra: true });
    },
    code: 'conflict',
    message: /server_id must look like srv_.*created_at .*unknown field\(s\) extra/,
  },
  {
    name: 'server.json that is not JSON',
    damage: (dir) => writeFileSync(path.join(dir, 'server.json'), '{"format": 1,', { mode: 0o600 }),
    code: 'conflict',
    message: /server\.json is not JSON/,
  },
  {
    name: 'server.key of another server',
    damage: (dir) => cpSync(path.join(other, 'server.key'), path.join(dir, 'server.key')),
    code: 'conflict',
    message: /server\.key does not match the public key in server\.json/,
  },
  {
    name: 'server.key that does not parse',
    damage: (dir) =>
      writeFileSync(path.join(dir, 'server.key'), 'k4.secret.AAAA\n', { mode: 0o600 }),
    code: 'conflict',
    message: /server\.key is not a usable k4\.secret key/,
  },
  {
    name: 'server.key and server.json of another server',
    damage: (dir) => {
      cpSync(path.join(other, 'server.key'), path.join(dir, 'server.key'));
      cpSync(path.join(other, 'server.json'), path.join(dir, 'server.json'));
    },
    code: 'conflict',
    message:
      /server\.json names server srv_.* but license\.db belongs to srv_.*; the identity files come from another server/,
  },
  {
    name: 'a 0-byte license.db',
    damage: (dir) => truncateSync(path.join(dir, 'license.db'), 0),
    code: 'conflict',
    message: /license\.db is empty \(0 bytes\).*not re-created; refusing to start/,
  },
  {
    name: 'license.db missing',
    damage: (dir) => rmSync(path.join(dir, 'license.db')),
    code: 'conflict',
    message: /only partly initialised .*missing: .*license\.db.*nothing is re-created/,
  },
  {
    name: 'license.db cut short at a page boundary',
    damage: (dir) => {
      const f = path.join(dir, 'license.db');
      truncateSync(f, Math.floor(statSync(f).size / 2 / 2048) * 2048);
    },
    code: 'conflict',
    message:
      /license\.db is \d+ bytes but its header records \d+ pages of 2048 bytes: it was cut short/,
  },
  {
    name: 'license.db cut short mid-page',
    damage: (dir) => {
      const f = path.join(dir, 'license.db');
      truncateSync(f, statSync(f).size - 100);
    },
    code: 'conflict',
    message: /license\.db is \d+ bytes, not a whole number of 2048-byte pages/,
  },
  {
    name: 'license.db that is not an SQLite file',
    damage: (dir) =>
      writeFileSync(path.join(dir, 'license.db'), 'hello, this is not a database\n'.repeat(100)),
    code: 'conflict',
    message: /license\.db is not an SQLite database/,
  },
  {
    name: 'license.db that is some other SQLite database',
    damage: (dir) => {
      rmSync(path.join(dir, 'license.db'));
      const db = new Database(path.join(dir, 'license.db'));
      db.exec('CREATE TABLE notes (body TEXT)');
      db.close();
    },
    code: 'conflict',
    message: /license\.db holds no license server schema \(schema version 0\)/,
  },
  {
    name: 'license.db with a table dropped',
    damage: (dir) => {
      const db = new Database(path.join(dir, 'license.db'));
      db.exec('DROP TABLE seats');
      db.close();
    },
    code: 'conflict',
    message: /license\.db does not have the license server's schema \(table seats is missing/,
  },
  // Not regular files: opening a FIFO blocks until a writer comes, a device is read without end.
  {
    name: 'license.db that is a named pipe (FIFO)',
    damage: (dir) => {
      rmSync(path.join(dir, 'license.db'));
      execFileSync('mkfifo', ['-m', '600', path.join(dir, 'license.db')]);
    },
    code: 'conflict',
    message: /license\.db is a named pipe \(FIFO\), not a regular file; refusing to start/,
  },
  {
    name: 'license.db that is a directory',
    damage: (dir) => {
      rmSync(path.join(dir, 'license.db'));
      mkdirSync(path.join(dir, 'license.db'));
    },
    code: 'conflict',
    message: /license\.db is a directory, not a regular file/,
  },
  {
    name: 'server.json that is a named pipe (FIFO)',
    damage: (dir) => {
      rmSync(path.join(dir, 'server.json'));
      execFileSync('mkfifo', ['-m', '600', path.join(dir, 'server.json')]);
    },
    code: 'conflict',
    message: /server\.json is a named pipe \(FIFO\), not a regular file/,
  },
  {
    name: 'server.key that is a named pipe (FIFO)',
    damage: (dir) => {
      rmSync(path.join(dir, 'server.key'));
      execFileSync('mkfifo', ['-m', '600', path.join(dir, 'server.key')]);
    },
    code: 'conflict',
    message: /server\.key is a named pipe \(FIFO\), not a regular file/,
  },
  {
    name: 'server.json that is a link to /dev/zero',
    damage: (dir) => {
      rmSync(path.join(dir, 'server.json'));
      symlinkSync('/dev/zero', path.join(dir, 'server.json'));
    },
    code: 'conflict',
    message: /server\.json is a device, not a regular file/,
  },
  {
    name: 'license.db with a damaged page header in the middle',
    damage: (dir) => void corruptLeasesPage(dir, 'header'),
    code: 'conflict',
    message: /license\.db is damaged \(PRAGMA quick_check: .*\); refusing to start/,
  },
  {
    name: 'license.db with garbage in the cells of a page in the middle',
    damage: (dir) => void corruptLeasesPage(dir, 'cells'),
    code: 'conflict',
    message: /license\.db is damaged \(PRAGMA quick_check: .*\); refusing to start/,
  },
];

describe('serve refuses to start on a damaged data directory, and changes nothing', () => {
  it.each(damages)('$name', async ({ damage, code, message }) => {
    const dir = copyOf(golden);
    damage(dir);
    const before = listing(dir);
    const r = await cli(['serve', '--port', '0'], dir);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`error[${code}]`);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^hint: (restore|stop the server and restore)/m);
    expect(listing(dir)).toEqual(before);
  });

  it('the same refusal as JSON names the failed check', async () => {
    const dir = copyOf(golden);
    truncateSync(path.join(dir, 'license.db'), 0);
    const r = await cli(['serve', '--port', '0', '--json'], dir);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: { code: 'conflict', details: { check: 'empty' } },
    });
  });

  it('a 0-byte license.db is refused by every command, and init does not make a new server over it', async () => {
    const dir = copyOf(golden);
    truncateSync(path.join(dir, 'license.db'), 0);
    const before = listing(dir);
    for (const args of [
      ['audit', 'verify'],
      ['entitlements', 'list'],
      ['backup', '--out', path.join(root, `bk-${n}`)],
      ['sync', 'export', '--out', path.join(root, `ex-${n}`)],
    ]) {
      const r = await cli(args, dir);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/error\[conflict\]: .*license\.db is empty \(0 bytes\)/);
    }
    expect(existsSync(path.join(root, `bk-${n}`))).toBe(false);
    expect(existsSync(path.join(root, `ex-${n}`))).toBe(false);
    const init = await cli(['init'], dir);
    expect(init.code).toBe(1);
    expect(init.stderr).toMatch(/error\[conflict\]: .*license\.db is empty/);
    expect(listing(dir)).toEqual(before);
  });
});

describe('startServer (in process) rejects the same way', () => {
  it('server.json without server_id: an AppError before listening; the three-seat entitlement keeps its seats', async () => {
    const dir = copyOf(golden);
    const { server_id: _, ...rest } = json(dir);
    writeJson(dir, rest);
    const before = listing(dir);
    const err = await startServer(
      { dataDir: dir, nativeCacheDir: dir, host: '127.0.0.1', port: 0, durability: 'full' },
      silentLogger,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({
      code: 'conflict',
      details: { check: 'identity', issues: [{ path: 'server_id', message: 'must be a string' }] },
    });
    expect(listing(dir)).toEqual(before);
    const db = new Database(path.join(dir, 'license.db'), { readonly: true });
    try {
      expect(
        db
          .prepare('SELECT count(*) FROM leases WHERE entitlement_id = ?')
          .pluck()
          .get(entitlementId),
      ).toBe(0);
    } finally {
      db.close();
    }
  });
});

describe('audit verify and backup run integrity_check', () => {
  it.each(['header', 'cells'] as const)(
    'audit verify exits 1 on a page damaged in its %s and does not call the chain intact',
    async (at) => {
      const dir = copyOf(golden);
      const good = await ok(['audit', 'verify'], dir);
      expect(good).toMatchObject({
        ok: true,
        integrity_check: { ok: true, problems: [] },
        first_break: null,
      });
      corruptLeasesPage(dir, at);
      const before = listing(dir);
      const r = await cli(['audit', 'verify'], dir);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /error\[conflict\]: .*license\.db is damaged \(PRAGMA integrity_check: /,
      );
      expect(r.stderr).toMatch(
        /^hint: stop the server and restore license\.db from the latest good backup/m,
      );
      expect(r.stdout).not.toContain('intact');
      const j = await cli(['audit', 'verify', '--json'], dir);
      expect(j.code).toBe(1);
      const body = JSON.parse(j.stdout);
      expect(body).toMatchObject({ ok: false, integrity_check: { ok: false } });
      expect(body.integrity_check.problems.length).toBeGreaterThan(0);
      expect(listing(dir)).toEqual(before);
    },
  );

  it.each(['header', 'cells'] as const)(
    'backup refuses a database with a page damaged in its %s: exit 1, no backup folder, the source unchanged',
    async (at) => {
      const dir = copyOf(golden);
      corruptLeasesPage(dir, at);
      const before = listing(dir);
      const out = path.join(root, `backup-of-damaged-${at}`);
      const r = await cli(['backup', '--out', out], dir);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /error\[conflict\]: .*license\.db is damaged \(PRAGMA integrity_check: .*\); no backup was made/,
      );
      expect(r.stderr).toMatch(/^hint: stop the server and restore/m);
      expect(existsSync(out)).toBe(false);
      expect(listing(dir)).toEqual(before);
    },
  );

  it('backup of a sound database says integrity_check ok and opens as the same server', async () => {
    const dir = copyOf(golden);
    const out = path.join(root, 'backup-good');
    const r = await ok(['backup', '--out', out], dir);
    expect(r).toMatchObject({ integrity_check: 'ok' });
    expect(mode(out)).toBe(0o700);
    for (const f of ['license.db', 'server.key', 'server.json'])
      expect(mode(path.join(out, f)), f).toBe(0o600);
    expect((await ok(['entitlements', 'show', entitlementId], out)).entitlement_id).toBe(
      entitlementId,
    );
  });
});

describe('file modes: every file the server writes is 0600, its folders 0700', () => {
  it('init into an existing 0755 folder tightens it to 0700 and makes its files 0600', async () => {
    const dir = path.join(root, 'premade');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const r = await cli(['init'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`note: tightened ${dir} from 0755 to 0700`);
    expect(mode(dir)).toBe(0o700);
    expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.json', 'server.key']);
    for (const f of readdirSync(dir)) expect(mode(path.join(dir, f)), f).toBe(0o600);
  });

  it('an existing server with 0644 files and a 0755 folder: init tightens all, any command tightens the files', async () => {
    const dir = copyOf(golden);
    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, 'license.db'), 0o644);
    chmodSync(path.join(dir, 'server.json'), 0o644);
    await ok(['entitlements', 'list'], dir);
    expect(mode(path.join(dir, 'license.db'))).toBe(0o600);
    expect(mode(path.join(dir, 'server.json'))).toBe(0o600);
    expect(mode(dir)).toBe(0o755);
    const r = await cli(['init'], dir);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('from 0755 to 0700');
    expect(mode(dir)).toBe(0o700);
  });

  it('serve: license.db and its -wal and -shm are 0600 while it runs; sync export writes 0600 files', async () => {
    const dir = copyOf(golden);
    chmodSync(path.join(dir, 'license.db'), 0o644);
    const token = (await ok(['tokens', 'create', '--name', 'modes', '--role', 'admin'], dir))
      .token as string;
    const s = await startServe(CLI, ['--port', '0', '--host', '127.0.0.1', '--data-dir', dir]);
    try {
      const res = await fetch(`${s.base}/v1/license/lease`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          tenant_id: 'acme',
          product_id: 'cad',
          subject_type: 'user',
          subject_id: 'alice',
        }),
      });
      expect(res.status).toBe(201);
      for (const f of [
        'license.db',
        'license.db-wal',
        'license.db-shm',
        'server.json',
        'server.key',
      ])
        expect(mode(path.join(dir, f)), f).toBe(0o600);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
    const out = path.join(root, `exports-${n}`);
    const r = await ok(['sync', 'export', '--out', out], dir);
    expect(mode(out)).toBe(0o700);
    expect(mode(r.file)).toBe(0o600);
    expect(readdirSync(out)).toEqual([path.basename(r.file)]);
  });
});

describe('read-only file system at start', () => {
  it('serve refuses with storage_unavailable and a hint, and writes nothing', async (ctx) => {
    const dir = copyOf(golden);
    const ro = path.join(root, 'ro-mount');
    mkdirSync(ro);
    try {
      execFileSync('mount', ['--bind', dir, ro], { stdio: 'pipe' });
    } catch (err) {
      console.log(
        `skipped: mount --bind is not allowed here (${String((err as Error).message).split('\n')[0]})`,
      );
      ctx.skip();
      return;
    }
    try {
      execFileSync('mount', ['-o', 'remount,ro,bind', ro], { stdio: 'pipe' });
      const before = listing(dir);
      const r = await cli(['serve', '--port', '0'], ro);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        /error\[storage_unavailable\]: .*ro-mount is on a read-only file system; the server needs to write license\.db and its WAL, so it refuses to start/,
      );
      expect(r.stderr).toMatch(/^hint: remount the file system read-write/m);
      expect(listing(dir)).toEqual(before);
    } finally {
      execFileSync('umount', [ro], { stdio: 'pipe' });
    }
  });
});

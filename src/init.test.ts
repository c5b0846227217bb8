import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import { AppError } from './errors.ts';
import { initServer, type InitOptions } from './init.ts';
import { openContext } from './context.ts';
import { createIdentity, dataPaths } from './data-dir.ts';
import { lockDataDir } from './storage/data-dir-lock.ts';
import { openStore } from './storage/store.ts';
import { pinnedVendorKeys } from './sync/trust.ts';
import { generateSigningKey, verifyKeyFromPaserk } from './tokens/keys.ts';
import { freshPgUrlSync, tempDir } from '../test/helpers.ts';

const root = tempDir('bpls-init-');
afterAll(() => rmSync(root, { recursive: true, force: true }));
const clock = new ManualClock('2026-03-01T12:00:00Z');
let n = 0;

function opts(dataDir: string, more: Partial<InitOptions> = {}) {
  const notes: string[] = [];
  const o: InitOptions = {
    dataDir,
    nativeCacheDir: join(root, 'cache'),
    durability: 'full',
    vendorKeys: [],
    force: false,
    actor: 'cli:tester',
    onNote: (l) => notes.push(l),
    clock,
    ...more,
  };
  return { o, notes };
}
const newDir = () => join(root, `d${n++}`);
const vendorKey = () => verifyKeyFromPaserk(generateSigningKey().publicPaserk);

/** The audit rows of a data directory, oldest first. */
function auditOf(dataDir: string) {
  const store = openStore(dataPaths(dataDir).db, { mustExist: true });
  try {
    return store.audit.page(0, 100).map((r) => ({ action: r.action, actor: r.actor }));
  } finally {
    store.close();
  }
}

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a refusal');
}

describe('initServer', () => {
  it('makes a server in a new directory: 0600 files, the server id and the init row in the database, one admin token that works', () => {
    const dir = newDir();
    const key = vendorKey();
    const { o } = opts(dir, { vendorKeys: [key] });
    const r = initServer(o);
    expect(r).toMatchObject({ created: true, vendorKids: [key.kid], movedAside: [] });
    expect(r.adminToken).toMatch(/^bpls_/);
    expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.json', 'server.key']);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['license.db', 'server.json', 'server.key'])
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    const info = JSON.parse(readFileSync(join(dir, 'server.json'), 'utf8'));
    expect(r.info).toMatchObject({ server_id: info.server_id, kid: info.kid });

    const ctx = openContext({ dataDir: dir, nativeCacheDir: o.nativeCacheDir });
    try {
      expect(ctx.store.state.get('server_id')).toBe(r.info.server_id);
      expect(pinnedVendorKeys(ctx.store).map((k) => k.kid)).toEqual([key.kid]);
      expect(ctx.services.apiTokens.authenticate(r.adminToken!)).toMatchObject({ role: 'admin' });
      expect(ctx.services.audit.verify().ok).toBe(true);
    } finally {
      ctx.close();
    }
    expect(auditOf(dir).map((a) => a.action)).toEqual([
      'server.init',
      'sync.vendor_keys_pinned',
      'token.create',
    ]);
    expect(auditOf(dir).every((a) => a.actor === 'cli:tester')).toBe(true);
  });

  it('finds a whole server and changes nothing: no new token, no new audit row', () => {
    const dir = newDir();
    const first = initServer(opts(dir).o);
    const rows = auditOf(dir);
    const again = initServer(opts(dir).o);
    expect(again).toEqual({
      created: false,
      info: first.info,
      adminToken: null,
      vendorKids: [],
      movedAside: [],
    });
    expect(auditOf(dir)).toEqual(rows);
  });

  it('pins vendor keys on a server made without them, once; another set is refused and nothing changes', () => {
    const dir = newDir();
    initServer(opts(dir).o);
    const key = vendorKey();
    expect(initServer(opts(dir, { vendorKeys: [key] }).o).pinned).toBe('pinned');
    expect(initServer(opts(dir, { vendorKeys: [key] }).o).pinned).toBe('unchanged');
    const rows = auditOf(dir);
    const e = errorOf(() => initServer(opts(dir, { vendorKeys: [vendorKey()] }).o));
    expect(e.code).toBe('conflict');
    expect(e.message).toMatch(/^vendor keys are pinned already/);
    expect(auditOf(dir)).toEqual(rows);
  });

  it('refuses a partly initialised directory without force, and leaves it as it was', () => {
    const dir = newDir();
    initServer(opts(dir).o);
    rmSync(join(dir, 'server.key'));
    const before = readdirSync(dir).sort();
    const e = errorOf(() => initServer(opts(dir).o));
    expect(e.code).toBe('conflict');
    expect(e.message).toBe(`${dir} is only partly initialised; refusing to overwrite it`);
    expect(readdirSync(dir).sort()).toEqual(before);
  });

  it('with force, keeps the old files aside and makes a new server', () => {
    const dir = newDir();
    const old = initServer(opts(dir).o);
    const r = initServer(opts(dir, { force: true }).o);
    expect(r.created).toBe(true);
    expect(r.info.server_id).not.toBe(old.info.server_id);
    expect(r.movedAside).toHaveLength(3);
    for (const f of r.movedAside) expect(existsSync(f), f).toBe(true);
    expect(auditOf(dir).map((a) => a.action)).toEqual(['server.init', 'token.create']);
    expect(existsSync(join(dir, 'serve.lock'))).toBe(false);
  });

  it('says another init is making a partly made directory, and leaves it as it was', () => {
    const dir = newDir();
    initServer(opts(dir).o);
    rmSync(join(dir, 'server.json'));
    const lock = lockDataDir(dir, { role: 'init' });
    try {
      const e = errorOf(() => initServer(opts(dir).o));
      expect(e.code).toBe('conflict');
      expect(e.message).toMatch(/is being initialised by another process/);
      expect(readdirSync(dir).sort()).toEqual(['license.db', 'serve.lock', 'server.key']);
    } finally {
      lock.release({ discard: true });
    }
    expect(errorOf(() => initServer(opts(dir).o)).message).toBe(
      `${dir} is only partly initialised; refusing to overwrite it`,
    );
    expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.key']);
  });

  it('discards a lock file made in a race by a process that never held it (an init refused, or killed, after making it): the directory ends with its three files', () => {
    const dir = newDir();
    mkdirSync(dir, { mode: 0o700 });
    // What the refused init of two at once leaves: serve.lock made (O_EXCL), never written to.
    writeFileSync(join(dir, 'serve.lock'), '', { mode: 0o600 });
    expect(initServer(opts(dir).o).created).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.json', 'server.key']);
  });

  it("discards a lock file whose last record is an init's (two inits each wrote theirs, one was refused at the lock; or an init was killed)", () => {
    const dir = newDir();
    mkdirSync(dir, { mode: 0o700 });
    lockDataDir(dir, { role: 'init' }).release();
    expect(initServer(opts(dir).o).created).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.json', 'server.key']);
  });

  it('keeps a lock file some server held before (a stopped serve leaves it, with its holder record)', () => {
    const dir = newDir();
    mkdirSync(dir, { mode: 0o700 });
    lockDataDir(dir, { role: 'serve' }).release();
    expect(initServer(opts(dir).o).created).toBe(true);
    expect(readdirSync(dir).sort()).toEqual([
      'license.db',
      'serve.lock',
      'server.json',
      'server.key',
    ]);
  });

  it('refuses force while a server holds the directory, and touches none of its files', () => {
    const dir = newDir();
    const old = initServer(opts(dir).o);
    const lock = lockDataDir(dir, { role: 'serve' });
    try {
      const e = errorOf(() => initServer(opts(dir, { force: true }).o));
      expect(e.code).toBe('conflict');
      const info = JSON.parse(readFileSync(join(dir, 'server.json'), 'utf8'));
      expect(info.server_id).toBe(old.info.server_id);
      expect(readdirSync(dir).sort()).toEqual([
        'license.db',
        'serve.lock',
        'server.json',
        'server.key',
      ]);
    } finally {
      lock.release({ discard: true });
    }
  });

  it('says which modes it tightened in a folder made beforehand', () => {
    const dir = newDir();
    // A folder made by hand, as `mkdir` leaves it.
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const { o, notes } = opts(dir);
    expect(initServer(o).created).toBe(true);
    expect(notes.length).toBeGreaterThan(0);
    expect(notes.join('\n')).toContain(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe('initServer on PostgreSQL', () => {
  const pgOpts = (dataDir: string, database: string) => opts(dataDir, { database }).o;

  it('initialises the database once: a second init elsewhere is refused and leaves no identity behind; a copy of the first directory is "already initialised"', () => {
    const url = freshPgUrlSync();
    const a = newDir();
    const first = initServer(pgOpts(a, url));
    expect(first).toMatchObject({ created: true, adminToken: expect.stringMatching(/^bpls_/) });
    expect(existsSync(dataPaths(a).db)).toBe(false);
    const b = newDir();
    const e = errorOf(() => initServer(pgOpts(b, url)));
    expect(e.code).toBe('conflict');
    expect(e.message).toContain(`initialised already, by server ${first.info.server_id}`);
    expect(existsSync(dataPaths(b).key) || existsSync(dataPaths(b).info)).toBe(false);
    const again = initServer(pgOpts(a, url));
    expect(again).toMatchObject({ created: false, adminToken: null });
    expect(again.info.server_id).toBe(first.info.server_id);
  });

  it('an init interrupted after writing the identity (before its commit) is finished by the next init, for that identity', () => {
    const url = freshPgUrlSync();
    const dir = newDir();
    // What the interrupted init left: the key, server.json still pending, and a database without
    // a server.
    const id = createIdentity(dir, clock.now());
    renameSync(dataPaths(dir).info, `${dataPaths(dir).info}.init`);
    const r = initServer(pgOpts(dir, url));
    expect(existsSync(dataPaths(dir).info)).toBe(true);
    expect(existsSync(`${dataPaths(dir).info}.init`)).toBe(false);
    expect(r).toMatchObject({ created: true, adminToken: expect.stringMatching(/^bpls_/) });
    expect(r.info.server_id).toBe(id.info.server_id);
    const ctx = openContext({ dataDir: dir, nativeCacheDir: join(root, 'cache'), database: url });
    try {
      expect(ctx.store.state.get('server_id')).toBe(id.info.server_id);
      expect(ctx.services.apiTokens.authenticate(r.adminToken!)).toMatchObject({ role: 'admin' });
    } finally {
      ctx.close();
    }
  });

  it("refuses to initialise another database from a node's copy of the identity (a wrong --database would make a second pool of seats)", () => {
    const dir = newDir();
    const first = initServer(pgOpts(dir, freshPgUrlSync()));
    expect(first.created).toBe(true);
    const other = freshPgUrlSync();
    const e = errorOf(() => initServer(pgOpts(dir, other)));
    expect(e.code).toBe('conflict');
    expect(e.message).toContain(`was not initialised for server ${first.info.server_id}`);
    expect(e.hint).toMatch(/--database/);
  });

  it('refuses --force, naming the database without its password', () => {
    const e = errorOf(() =>
      initServer({
        ...pgOpts(newDir(), 'postgres://bpls:s3cret@127.0.0.1:1/db?password=s3cret2'),
        force: true,
      }),
    );
    expect(e.code).toBe('conflict');
    expect(JSON.stringify(e.details)).not.toMatch(/s3cret/);
  });
});

// The real CLI (dist/cli.cjs under Node 24), spawned for real against a temp data directory.
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe } from '../spawn.ts';
import { openStore } from '../../src/storage/store.ts';
import { createAuditService } from '../../src/domain/audit.ts';

let root: string;
let dataDir: string;
let adminToken: string;

const cli = (args: string[], opts: { dir?: string; input?: string } = {}) =>
  runProcess(CLI, [...args, '--data-dir', opts.dir ?? dataDir], {
    cwd: root,
    ...(opts.input ? { input: opts.input } : {}),
  });
const json = async (args: string[], dir?: string) => {
  const r = await cli([...args, '--json'], dir === undefined ? {} : { dir });
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
};

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-cli-'));
  dataDir = path.join(root, 'data');
  const init = await json(['init']);
  adminToken = init.admin_token;
});
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('init', () => {
  it('two inits at once on a new directory make one server: the other refuses or finds it made, and no identity is printed that the directory does not keep', async () => {
    for (let round = 0; round < 4; round++) {
      const dir = path.join(root, `race-${round}`);
      const [a, b] = await Promise.all([
        cli(['init', '--json'], { dir }),
        cli(['init', '--json'], { dir }),
      ]);
      const kept = JSON.parse(readFileSync(path.join(dir, 'server.json'), 'utf8')) as {
        server_id: string;
      };
      const made = [a, b].filter((r) => r.code === 0 && JSON.parse(r.stdout).created === true);
      expect(made, `${a.stdout}${a.stderr}\n${b.stdout}${b.stderr}`).toHaveLength(1);
      expect(JSON.parse(made[0]!.stdout).server_id).toBe(kept.server_id);
      for (const r of [a, b].filter((x) => x !== made[0])) {
        if (r.code === 0)
          expect(JSON.parse(r.stdout)).toMatchObject({
            created: false,
            server_id: kept.server_id,
            admin_token: null,
          });
        else expect(r.stderr).toMatch(/^error\[conflict\]/);
      }
      expect(readdirSync(dir).sort()).toEqual(['license.db', 'server.json', 'server.key']);
    }
  }, 60_000);

  it('creates the database, a 0600 server key and server.json, and prints the first admin token', async () => {
    expect(adminToken).toMatch(/^bpls_[A-Za-z0-9_-]{43}$/);
    expect(readdirSync(dataDir).sort()).toEqual(
      expect.arrayContaining(['license.db', 'server.json', 'server.key']),
    );
    expect(statSync(path.join(dataDir, 'server.key')).mode & 0o777).toBe(0o600);
  });

  it('is idempotent: a second init changes nothing and makes no token', async () => {
    const before = statSync(path.join(dataDir, 'server.key')).mtimeMs;
    const again = await json(['init']);
    expect(again).toMatchObject({ created: false, admin_token: null });
    expect(statSync(path.join(dataDir, 'server.key')).mtimeMs).toBe(before);
  });

  it('refuses a partly initialised directory, and --force starts over keeping the old files aside', async () => {
    const dir = path.join(root, 'partial');
    await json(['init'], dir);
    unlinkSync(path.join(dir, 'server.json'));
    const r = await cli(['init'], { dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[conflict]');
    expect(r.stderr).toContain('partly initialised');
    const forced = await json(['init', '--force'], dir);
    expect(forced.created).toBe(true);
    expect(forced.moved_aside.length).toBeGreaterThan(0);
    expect(readdirSync(dir).some((f) => f.startsWith('server.key.replaced-'))).toBe(true);
  });

  it('refuses to start on a server key readable by others', async () => {
    const dir = path.join(root, 'loose');
    await json(['init'], dir);
    const { chmodSync } = await import('node:fs');
    chmodSync(path.join(dir, 'server.key'), 0o644);
    const r = await cli(['entitlements', 'list'], { dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[forbidden\].*0600/);
  });
});

describe('entitlements', () => {
  let id: string;
  it('create, show, list, update, suspend, resume, renew, revoke', async () => {
    const created = await json([
      'entitlements',
      'create',
      '--tenant',
      'acme',
      '--product',
      'cad',
      '--type',
      'concurrent',
      '--max-seats',
      '10',
      '--features',
      'a,b',
      '--starts',
      '2024-01-01T00:00:00Z',
      '--ends',
      '2099-01-01T00:00:00Z',
    ]);
    id = created.entitlement_id;
    expect(created).toMatchObject({
      tenant_id: 'acme',
      product_id: 'cad',
      policy_json: { type: 'concurrent', max_seats: 10, features: ['a', 'b'] },
      status: 'active',
      source: 'manual',
    });
    expect((await json(['entitlements', 'show', id])).entitlement_id).toBe(id);
    const list = await json(['entitlements', 'list', '--tenant', 'acme']);
    expect(list.data.map((e: any) => e.entitlement_id)).toEqual([id]);
    const updated = await json(['entitlements', 'update', id, '--max-seats', '20']);
    expect(updated.policy_json).toEqual({
      type: 'concurrent',
      max_seats: 20,
      features: ['a', 'b'],
    });
    expect((await json(['entitlements', 'suspend', id])).status).toBe('suspended');
    expect((await json(['entitlements', 'resume', id])).status).toBe('active');
    expect((await json(['entitlements', 'renew', id, '--months', '12'])).ends_at).toBe(
      '2100-01-01T00:00:00Z',
    );
    expect((await json(['entitlements', 'revoke', id])).status).toBe('revoked');
  });

  it('sets every policy field by a flag: the floating extras and auto_update too, stored as given', async () => {
    const made = await json([
      'entitlements',
      'create',
      '--tenant',
      'floaty',
      '--product',
      'cad',
      '--type',
      'concurrent',
      '--max-seats',
      '2',
      '--overdraft-seats',
      '1',
      '--max-borrow-hours',
      '72',
      '--max-borrowed-seats',
      '1',
      '--max-instances-per-subject',
      '3',
      '--auto-update',
      'true',
      '--ends',
      '2099-01-01T00:00:00Z',
    ]);
    const policy = {
      type: 'concurrent',
      max_seats: 2,
      overdraft_seats: 1,
      max_borrow_hours: 72,
      max_borrowed_seats: 1,
      max_instances_per_subject: 3,
      auto_update: true,
    };
    expect(made.policy_json).toEqual(policy);
    const store = openStore(path.join(dataDir, 'license.db'), { mustExist: true });
    try {
      expect(store.entitlements.get(made.entitlement_id)?.policy).toEqual(policy);
    } finally {
      store.close();
    }
    // update merges a flag into the stored policy.
    const updated = await json([
      'entitlements',
      'update',
      made.entitlement_id,
      '--overdraft-seats',
      '0',
    ]);
    expect(updated.policy_json).toEqual({ ...policy, overdraft_seats: 0 });
    const bad = await cli(['entitlements', 'update', made.entitlement_id, '--auto-update', 'yes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--auto-update must be true or false');
    expect((await json(['entitlements', 'show', made.entitlement_id])).policy_json).toEqual({
      ...policy,
      overdraft_seats: 0,
    });
  });

  it('prints a table for people', async () => {
    const r = await cli(['entitlements', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ID\s+TENANT\s+PRODUCT\s+TYPE\s+SEATS\s+STATUS\s+ENDS/);
  });

  it('answers a bad policy with error[invalid_request] on stderr and exit 1, or the envelope with --json', async () => {
    const args = [
      'entitlements',
      'create',
      '--tenant',
      'acme',
      '--product',
      'cad',
      '--type',
      'galactic',
      '--ends',
      '2099-01-01T00:00:00Z',
    ];
    const r = await cli(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error\[invalid_request\]: invalid entitlement: --type must be one of per_user, /,
    );
    const j = await cli([...args, '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: 'invalid_request' });
  });

  it('answers an unknown id with not_found and exit 1', async () => {
    const r = await cli(['entitlements', 'show', 'ent_missing']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[not_found]: no entitlement ent_missing');
  });

  it('imports a file all or nothing, naming bad items by index', async () => {
    const good = {
      tenant_id: 'bulk',
      product_id: 'cad',
      policy_json: { type: 'per_user', max_seats: 5 },
      starts_at: '2024-01-01T00:00:00Z',
      ends_at: '2099-01-01T00:00:00Z',
    };
    const file = path.join(root, 'import.json');
    writeFileSync(
      file,
      JSON.stringify({
        entitlements: [good, { ...good, policy_json: { type: 'per_user' } }, good],
      }),
    );
    const bad = await cli(['entitlements', 'import', file]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      'error[invalid_request]: 1 of 3 entitlements are invalid; nothing was imported',
    );
    expect(bad.stderr).toContain(
      'item 1 policy_json.max_seats: max_seats is required for per_user',
    );
    expect((await json(['entitlements', 'list', '--tenant', 'bulk'])).data).toHaveLength(0);
    writeFileSync(file, JSON.stringify({ entitlements: [good, good] }));
    expect(await json(['entitlements', 'import', file])).toMatchObject({
      created: 2,
      updated: 0,
      total: 2,
    });
    writeFileSync(file, '{not json');
    const broken = await cli(['entitlements', 'import', file]);
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toContain('is not valid JSON');
    const missing = await cli(['entitlements', 'import', path.join(root, 'nope.json')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error[not_found]');
  });
});

describe('seats, check and usage', () => {
  it('assigns, lists and revokes seats, checks and reports usage, as JSON and CSV', async () => {
    const e = await json([
      'entitlements',
      'create',
      '--tenant',
      'seats',
      '--product',
      'cad',
      '--type',
      'per_user',
      '--max-seats',
      '3',
      '--seat-assignment',
      'manual',
      '--starts',
      '2024-01-01T00:00:00Z',
      '--ends',
      '2099-01-01T00:00:00Z',
    ]);
    const assigned = await json(['seats', 'assign', e.entitlement_id, 'alice', 'bob']);
    expect(assigned.assigned).toBe(2);
    const list = await json(['seats', 'list', e.entitlement_id]);
    expect(list.data.map((s: any) => s.subject_id).sort()).toEqual(['alice', 'bob']);
    const again = await cli(['seats', 'assign', e.entitlement_id, 'carol', 'alice']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(
      'error[conflict]: 1 of 2 subjects cannot take a seat; no seat was assigned',
    );
    expect(
      await json(['entitlements', 'check', e.entitlement_id, '--subject', 'alice']),
    ).toMatchObject({ can_lease: true, remaining_seats: 1 });
    expect(
      await json(['entitlements', 'check', e.entitlement_id, '--subject', 'zoe']),
    ).toMatchObject({ can_lease: false, reason: 'seat_not_assigned' });
    const revoked = await json(['seats', 'revoke', e.entitlement_id, list.data[0].seat_id]);
    expect(revoked.revoked).toBe(true);
    expect(await json(['entitlements', 'usage', e.entitlement_id])).toMatchObject({
      seats: { total: 3, assigned: 1, active_30d: 0 },
      leases: { active: 0 },
    });
    const csv = await cli(['entitlements', 'usage', e.entitlement_id, '--csv']);
    expect(csv.code).toBe(0);
    expect(csv.stdout.split('\r\n')[0]).toBe(
      'date,entitlement_id,tenant_id,product_id,grants,renewals,releases,denials,peak_concurrent,unique_subjects,overdraft_grants,borrows',
    );
  });
});

describe('tokens', () => {
  it('create shows the secret once, list never shows it, revoke ends it', async () => {
    const t = await json(['tokens', 'create', '--name', 'ci reader', '--role', 'reader']);
    expect(t.token).toMatch(/^bpls_/);
    const list = await cli(['tokens', 'list', '--json']);
    expect(list.stdout).not.toContain(t.token);
    expect(JSON.parse(list.stdout).data.find((x: any) => x.token_id === t.token_id)).toMatchObject({
      role: 'reader',
      status: 'active',
    });
    expect((await json(['tokens', 'revoke', t.token_id])).status).toBe('revoked');
    const again = await cli(['tokens', 'revoke', t.token_id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('error[conflict]');
  });
});

describe('usage', () => {
  it('--version and --help on every command exit 0', async () => {
    expect((await cli(['--version'])).code).toBe(0);
    for (const c of [
      [],
      ['init'],
      ['serve'],
      ['entitlements'],
      ['entitlements', 'create'],
      ['entitlements', 'import'],
      ['tokens', 'create'],
    ]) {
      const r = await runProcess(CLI, [...c, '--help']);
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage:');
    }
  });

  it('exits 2 on unknown commands, unknown options and missing arguments', async () => {
    for (const args of [
      ['frobnicate'],
      ['entitlements', 'list', '--bogus'],
      ['entitlements', 'show'],
      ['entitlements', 'create', '--tenant', 'x'],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/error/);
    }
  });

  it('tells the admin to run init when the data directory is empty', async () => {
    const r = await cli(['entitlements', 'list'], { dir: path.join(root, 'nothing-here') });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('holds no license server');
    // `data`, the suite's server, sits next to it: named first, init only for a NEW server.
    expect(r.stderr).toContain('hint: did you mean --data-dir data (export BPLS_DATA_DIR=data)?');
    expect(r.stderr).toContain('run: bp-license-server init --data-dir nothing-here');
  });
});

describe('serve', () => {
  it('prints exactly one line, answers, and drains on SIGTERM with exit 0', async () => {
    const s = await startServe(CLI, ['--data-dir', dataDir, '--port', '0']);
    expect(s.firstLine).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    const r = await fetch(`${s.base}/v1/entitlements`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
    const huge = await fetch(`${s.base}/v1/entitlements`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: 'x'.repeat(2 << 20),
    });
    expect(huge.status).toBe(413);
    // The body is not read: the server closes the connection after answering.
    expect(huge.headers.get('connection')).toBe('close');
    expect(((await huge.json()) as any).error.code).toBe('payload_too_large');
    const logLine = s
      .stderr()
      .split('\n')
      .find((l) => l.includes('"msg":"request"'));
    expect(JSON.parse(logLine!)).toMatchObject({
      method: 'GET',
      path: '/v1/entitlements',
      status: 200,
    });
    expect(s.stderr()).not.toContain(adminToken);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
    expect(s.extraStdout).toEqual([]);
  });

  it('shares the database with the CLI: a lease revoked from a shell is refused at its next renewal', async () => {
    const s = await startServe(CLI, ['--data-dir', dataDir, '--port', '0']);
    try {
      const ent = await json([
        'entitlements',
        'create',
        '--tenant',
        'shell',
        '--product',
        'cad',
        '--type',
        'concurrent',
        '--max-seats',
        '2',
        '--starts',
        '2024-01-01T00:00:00Z',
        '--ends',
        '2099-01-01T00:00:00Z',
      ]);
      const post = (path: string, body: unknown) =>
        fetch(`${s.base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const granted = (await (
        await post('/v1/license/lease', {
          tenant_id: 'shell',
          product_id: 'cad',
          subject_type: 'user',
          subject_id: 'alice',
        })
      ).json()) as any;
      expect(granted.lease_id).toMatch(/^lease_/);
      const listed = await json(['leases', 'list', '--entitlement', ent.entitlement_id]);
      expect(listed.data.map((l: any) => l.lease_id)).toEqual([granted.lease_id]);
      expect((await json(['leases', 'revoke', granted.lease_id])).state).toBe('revoked');
      const renewed = await post('/v1/license/lease/renew', { lease_id: granted.lease_id });
      expect(renewed.status).toBe(410);
      expect(((await renewed.json()) as any).error.code).toBe('lease_released');
      const keys = await (await fetch(`${s.base}/v1/license/keys`)).json();
      expect(await json(['keys', 'show'])).toEqual(keys);
    } finally {
      expect(await s.stop()).toEqual({ code: 0, signal: null });
    }
  });

  it('refuses a busy port with a clear error and exit 1', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    const r = await cli(['serve', '--port', String(port)]);
    blocker.close();
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error[conflict]: port ${port} on 127.0.0.1 is in use`);
  });

  it('refuses a bad port with a clear error', async () => {
    for (const port of ['99999', 'eighty', '-1']) {
      const r = await cli(['serve', '--port', port]);
      // The one wording of every whole-number option (src/integer-option.ts), a usage error.
      expect(r.code, port).toBe(2);
      expect(r.stderr).toBe('error[invalid_request]: --port must be a whole number, 0 to 65535\n');
    }
  });
});

describe('the audit chain', () => {
  it('is intact after every command above', () => {
    expect(existsSync(path.join(dataDir, 'license.db'))).toBe(true);
    const store = openStore(path.join(dataDir, 'license.db'), { mustExist: true });
    try {
      const v = createAuditService({ log: store.audit }).verify();
      expect(v.firstBreak).toBeNull();
      expect(v.rows).toBeGreaterThan(8);
    } finally {
      store.close();
    }
  });
});

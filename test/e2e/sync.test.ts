// The whole loop with the real CLI and server: vendor keygen → init with the key → sign → drop in
// the inbox → lease on a bundle entitlement → export → verify-export.
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { openStore } from '../../src/storage/store.ts';
import { standIn } from '../sync/stand-in.ts';
import { vendorSignArgs } from './world.ts';

let root: string;
let dataDir: string;
let syncDir: string;
let vendorDir: string;
let init: { server_id: string; public_key: string; admin_token: string; vendor_keys: string[] };
let vendor: { public_key: string; secret_key_file: string; public_key_file: string };
let server: ServeHandle | undefined;

const run = (args: string[]) => runProcess(CLI, args, { cwd: root });
const cli = (args: string[]) => run([...args, '--data-dir', dataDir]);
const ok = async (args: string[], withDataDir = true) => {
  const r = await (withDataDir ? cli([...args, '--json']) : run([...args, '--json']));
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
};

const entitlement = (id: string, over: Record<string, unknown> = {}) => ({
  entitlement_id: id,
  tenant_id: 'acme',
  product_id: 'cad',
  policy_json: { type: 'concurrent', max_seats: 2, features: ['draw', 'export'] },
  starts_at: '2024-01-01T00:00:00Z',
  ends_at: '2099-01-01T00:00:00Z',
  rev: 1,
  ...over,
});

function content(name: string, c: Record<string, unknown>): string {
  const file = path.join(root, name);
  writeFileSync(file, JSON.stringify(c));
  return file;
}

async function waitFor(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what}\nserver stderr: ${server?.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-sync-e2e-'));
  dataDir = path.join(root, 'data');
  syncDir = path.join(root, 'drop');
  vendorDir = path.join(root, 'vendor');
  vendor = await ok(['vendor', 'keygen', '--out', vendorDir], false);
  init = await ok(['init', '--vendor-key', vendor.public_key]);
});
afterAll(async () => {
  await server?.stop();
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('vendor keygen and init --vendor-key', () => {
  it('writes a 0600 secret key and a public key, and init pins the public key', async () => {
    expect(vendor.public_key).toMatch(/^k4\.public\./);
    expect(statSync(vendor.secret_key_file).mode & 0o777).toBe(0o600);
    expect(readFileSync(vendor.public_key_file, 'utf8').trim()).toBe(vendor.public_key);
    expect(readFileSync(vendor.secret_key_file, 'utf8')).toMatch(/^k4\.secret\./);
    expect(init.vendor_keys).toHaveLength(1);
    expect((await ok(['sync', 'status'])).vendor_keys).toEqual([
      { kid: init.vendor_keys[0], public_key: vendor.public_key },
    ]);
    const again = await run(['vendor', 'keygen', '--out', vendorDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/error\[conflict\]: .*vendor\.secret exists already/);
  });

  it('refuses malformed and small-order keys before creating anything', async () => {
    const smallOrder = `k4.public.${Buffer.alloc(32).toString('base64url')}`;
    for (const [key, message] of [
      [smallOrder, /small-order/],
      ['k4.public.not-a-key', /vendor key 1 is refused/],
      ['k4.secret.AAAA', /not a k4.public PASERK/],
    ] as const) {
      const dir = path.join(root, `refused-${Math.random().toString(36).slice(2)}`);
      const r = await run(['init', '--vendor-key', key, '--data-dir', dir]);
      expect(r.code, key).toBe(1);
      expect(r.stderr).toMatch(/^error\[invalid_request\]: --vendor-key: /);
      expect(r.stderr).toMatch(message);
      expect(existsSync(dir)).toBe(false);
    }
  });

  it('pins on a server made without a key; another key later is refused (only a bundle changes them)', async () => {
    const dir = path.join(root, 'late');
    await ok(['init', '--data-dir', dir], false);
    const pinned = await ok(['init', '--data-dir', dir, '--vendor-key', vendor.public_key], false);
    expect(pinned).toMatchObject({ created: false, vendor_keys_pinned: true });
    expect(
      (await ok(['init', '--data-dir', dir, '--vendor-key', vendor.public_key], false))
        .vendor_keys_pinned,
    ).toBe(false);
    const other = await ok(['vendor', 'keygen', '--out', path.join(root, 'other-vendor')], false);
    const r = await run(['init', '--data-dir', dir, '--vendor-key', other.public_key]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /error\[conflict\]: vendor keys are pinned already .* they change only through a signed bundle/,
    );
  });
});

describe('the loop through the server', () => {
  let exportFile: string;

  it('serve --sync-dir imports a bundle dropped in the inbox and moves it to processed/', async () => {
    const bundle1 = path.join(root, 'b1.bpsync');
    const signed = await ok(
      vendorSignArgs({
        key: vendor.secret_key_file,
        serverId: init.server_id,
        seq: 1,
        in: content('c1.json', {
          entitlements: [entitlement('ent_cad1')],
          revoked: [],
          settings: { allow_manual_provisioning: false },
        }),
        out: bundle1,
      }),
      false,
    );
    expect(signed).toMatchObject({ seq: 1, records: 2 });
    server = await startServe(
      CLI,
      ['--data-dir', dataDir, '--port', '0', '--sync-dir', syncDir, '--sync-poll-ms', '100'],
      { cwd: root },
    );
    expect(readdirSync(syncDir).sort()).toEqual(['inbox', 'outbox', 'processed', 'rejected']);
    copyFileSync(bundle1, path.join(syncDir, 'inbox', 'b1.bpsync'));
    await waitFor(
      'the bundle to be processed',
      () =>
        existsSync(path.join(syncDir, 'processed', 'b1.bpsync')) &&
        server!.stderr().includes('sync bundle imported'),
    );
    const line = server
      .stderr()
      .split('\n')
      .find((l) => l.includes('sync bundle imported'));
    expect(JSON.parse(line!)).toMatchObject({
      file: 'b1.bpsync',
      seq: 1,
      status: 'applied',
      added: 1,
    });
    expect(server.extraStdout).toEqual([]);
  });

  it('grants a lease on the bundle entitlement, which cannot be edited locally', async () => {
    for (const subject of ['alice', 'bob']) {
      const res = await fetch(`${server!.base}/v1/license/lease`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          tenant_id: 'acme',
          product_id: 'cad',
          subject_type: 'user',
          subject_id: subject,
        }),
      });
      expect(res.status).toBe(201);
      expect(((await res.json()) as any).features).toEqual(['draw', 'export']);
    }
    const edit = await cli(['entitlements', 'update', 'ent_cad1', '--max-seats', '99']);
    expect(edit.code).toBe(1);
    expect(edit.stderr).toContain(
      'error[managed_by_bundle]: ent_cad1 is managed by vendor bundles',
    );
    const manual = await cli([
      'entitlements',
      'create',
      '--tenant',
      'acme',
      '--product',
      'x',
      '--type',
      'concurrent',
      '--max-seats',
      '1',
      '--ends',
      '2099-01-01T00:00:00Z',
    ]);
    expect(manual.code).toBe(1);
    expect(manual.stderr).toContain('manual provisioning is closed');
  });

  it('moves a refused bundle to rejected/ with a .error.json', async () => {
    const other = path.join(root, 'other.bpsync');
    await ok(
      vendorSignArgs({
        key: vendor.secret_key_file,
        serverId: 'srv_somewhereelse',
        seq: 1,
        in: content('c-other.json', { entitlements: [] }),
        out: other,
      }),
      false,
    );
    copyFileSync(other, path.join(syncDir, 'inbox', 'other.bpsync'));
    await waitFor('the refusal', () =>
      existsSync(path.join(syncDir, 'rejected', 'other.bpsync.error.json')),
    );
    const report = JSON.parse(
      readFileSync(path.join(syncDir, 'rejected', 'other.bpsync.error.json'), 'utf8'),
    );
    expect(report).toMatchObject({ code: 'bundle_rejected', rule: 'wrong_server' });
  });

  it('refuses an upload whose declared size is over the cap before reading it', async () => {
    const url = new URL(`${server!.base}/v1/sync/import`);
    const answer = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = request(
        {
          hostname: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: {
            authorization: `Bearer ${init.admin_token}`,
            'content-type': 'application/octet-stream',
            'content-length': String(300 * 1024 * 1024),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => {
            req.destroy();
            resolve({ status: res.statusCode!, body: JSON.parse(text) });
          });
        },
      );
      req.on('error', reject);
      req.write('BPSYNC/1\n');
      // The server answers without waiting for the rest.
    });
    expect(answer.status).toBe(422);
    expect(answer.body.error).toMatchObject({
      code: 'bundle_rejected',
      details: { rule: 'too_large' },
    });
  });

  it('exports usage with the CLI while the server runs; vendor verify-export accepts it, a flipped byte fails it', async () => {
    const r = await ok(['sync', 'export', '--out', path.join(syncDir, 'outbox')]);
    expect(r).toMatchObject({ seq: 1 });
    exportFile = r.file;
    expect(path.dirname(exportFile)).toBe(path.join(syncDir, 'outbox'));
    const summary = await ok(
      ['vendor', 'verify-export', '--server-key', init.public_key, exportFile],
      false,
    );
    expect(summary).toMatchObject({
      ok: true,
      server_id: init.server_id,
      seq: 1,
      ack: 1,
      enrolment: true,
      usage: { entitlements: 1, grants: 2, peak_concurrent_max: 2 },
    });
    const bytes = readFileSync(exportFile);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
    const damaged = path.join(root, 'damaged.bpsync');
    writeFileSync(damaged, bytes);
    const bad = await run(['vendor', 'verify-export', '--server-key', init.public_key, damaged]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^error\[bundle_rejected\]: the payload does not match the sha256 in the manifest/,
    );
    const badJson = await run([
      'vendor',
      'verify-export',
      '--server-key',
      init.public_key,
      damaged,
      '--json',
    ]);
    expect(JSON.parse(badJson.stdout).error).toMatchObject({
      code: 'bundle_rejected',
      details: { rule: 'malformed' },
    });
  });

  it('exports over HTTP too, chained to the CLI export', async () => {
    const res = await fetch(`${server!.base}/v1/sync/export`, {
      method: 'POST',
      headers: { authorization: `Bearer ${init.admin_token}` },
    });
    expect(res.status).toBe(200);
    const file = path.join(root, 'http-export.bpsync');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const summary = await ok(
      ['vendor', 'verify-export', '--server-key', init.public_key, file, '--prev', exportFile],
      false,
    );
    expect(summary).toMatchObject({ seq: 2, enrolment: false });
  });

  it('stops cleanly', async () => {
    expect(await server!.stop()).toEqual({ code: 0, signal: null });
    server = undefined;
  });
});

describe('sync import from the shell', () => {
  it('prints the dry-run diff, then imports; a second time is a no-op', async () => {
    const b2 = path.join(root, 'b2.bpsync');
    await ok(
      vendorSignArgs({
        key: vendor.secret_key_file,
        serverId: init.server_id,
        seq: 2,
        prev: path.join(root, 'b1.bpsync'),
        in: content('c2.json', {
          entitlements: [
            entitlement('ent_cad1', { rev: 2, policy_json: { type: 'concurrent', max_seats: 1 } }),
            entitlement('ent_cad2'),
          ],
          revoked: ['ent_gone'],
        }),
        out: b2,
      }),
      false,
    );
    const dry = await cli(['sync', 'import', b2, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(
      'dry run of bundle seq 2 (nothing was changed): 1 added, 1 changed, 1 revoked, 0 suspended, 0 unchanged',
    );
    expect(dry.stdout).toContain('  + ent_cad2');
    expect(dry.stdout).toContain('  ~ ent_cad1 (policy_json, rev)');
    expect(dry.stdout).toContain('  x ent_gone revoked');
    expect(dry.stdout).toMatch(/seats cut: ent_cad1 now allows 1, 2 in use/);
    const applied = await ok(['sync', 'import', b2]);
    expect(applied).toMatchObject({ seq: 2, added: 1, changed: 1, revoked: 1, unchanged: 0 });
    expect(await ok(['sync', 'import', b2])).toMatchObject({ status: 'unchanged', seq: 2 });
  });

  it('refuses with error[bundle_rejected] and exit 1, or the envelope with --json', async () => {
    const r = await cli(['sync', 'import', path.join(root, 'b1.bpsync')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error\[bundle_rejected\]: bundle seq 1 is older than the last imported bundle \(seq 2\)/,
    );
    const j = await cli(['sync', 'import', path.join(root, 'b1.bpsync'), '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout).error).toMatchObject({
      code: 'bundle_rejected',
      details: { rule: 'replay', seq: 1, last_seq: 2 },
    });
    const missing = await cli(['sync', 'import', path.join(root, 'nope.bpsync')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error[not_found]');
    const noPrev = await run(
      vendorSignArgs({
        key: vendor.secret_key_file,
        serverId: init.server_id,
        seq: 3,
        in: path.join(root, 'c2.json'),
        out: path.join(root, 'x.bpsync'),
      }),
    );
    expect(noPrev.code).toBe(2);
    expect(noPrev.stderr).toContain('seq 3 needs --prev');
  });
});

describe('outbound sync', () => {
  it("serve --sync-url pulls the vendor's newest bundle and pushes exports to a stand-in on 127.0.0.1", async () => {
    const cloud = await standIn();
    try {
      const b3 = path.join(root, 'b3.bpsync');
      await ok(
        vendorSignArgs({
          key: vendor.secret_key_file,
          serverId: init.server_id,
          seq: 3,
          prev: path.join(root, 'b2.bpsync'),
          in: content('c3.json', {
            entitlements: [entitlement('ent_cad3')],
            revoked: ['ent_gone'],
          }),
          out: b3,
        }),
        false,
      );
      cloud.bundles.set(3, readFileSync(b3));
      server = await startServe(
        CLI,
        [
          '--data-dir',
          dataDir,
          '--port',
          '0',
          '--sync-dir',
          syncDir,
          '--sync-url',
          cloud.url,
          '--sync-interval',
          '1',
        ],
        { cwd: root },
      );
      // The export the shell left in the outbox goes first (seq 1), then the new one (seq 3;
      // seq 2 went out over HTTP and was never in the outbox).
      await waitFor('two exports to reach the stand-in', () => cloud.exports.length >= 2);
      expect(cloud.exports.slice(0, 2).map((e) => e.seq)).toEqual(['1', '3']);
      expect(server.stderr()).toContain('"msg":"sync pull: bundle imported"');
      expect((await ok(['sync', 'status'])).last_import.seq).toBe(3);
      expect(readdirSync(path.join(syncDir, 'outbox', 'sent'))).toHaveLength(cloud.exports.length);
      const file = path.join(root, 'pushed.bpsync');
      writeFileSync(file, cloud.exports[1]!.body);
      expect(
        await ok(['vendor', 'verify-export', '--server-key', init.public_key, file], false),
      ).toMatchObject({ ok: true, ack: 3 });
      expect(await server.stop()).toEqual({ code: 0, signal: null });
      server = undefined;
      const bad = await cli(['serve', '--port', '0', '--sync-url', 'ftp://nowhere']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--sync-url must be an http:// or https:// URL');
    } finally {
      await cloud.close();
    }
  });
});

describe('audit verify and backup', () => {
  it('backup copies the database, the 0600 key and server.json into a folder that opens as a server', async () => {
    const out = path.join(root, 'backup-1');
    const r = await ok(['backup', '--out', out]);
    expect(readdirSync(out).sort()).toEqual(['license.db', 'server.json', 'server.key']);
    expect(statSync(path.join(out, 'server.key')).mode & 0o777).toBe(0o600);
    expect(r.audit_head.seq).toBeGreaterThan(5);
    expect((await ok(['sync', 'status', '--data-dir', out], false)).last_import.seq).toBe(3);
    const again = await cli(['backup', '--out', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('error[conflict]');
  });

  it('audit verify passes, then exits 1 at an edited row', async () => {
    const good = await ok(['audit', 'verify']);
    expect(good).toMatchObject({ ok: true, first_break: null });
    const store = openStore(path.join(dataDir, 'license.db'), { mustExist: true });
    try {
      store.db.exec('DROP TRIGGER audit_log_no_update');
      store.db.prepare("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").run();
    } finally {
      store.close();
    }
    const bad = await cli(['audit', 'verify']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      'error[conflict]: the audit chain is broken at row 3: row content does not match its hash',
    );
    const badJson = await cli(['audit', 'verify', '--json']);
    expect(badJson.code).toBe(1);
    expect(JSON.parse(badJson.stdout)).toMatchObject({ ok: false, first_break: { seq: 3 } });
  });
});

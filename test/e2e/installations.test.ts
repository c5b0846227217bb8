// The real CLI (dist/cli.cjs) and a real `serve`: the installations commands, quotas in check and
// usage, and the quota limit held exactly when CLI processes and HTTP requests install at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe } from '../spawn.ts';
import { openStore } from '../../src/storage/store.ts';

let root: string;
let dataDir: string;
let adminToken: string;

const cli = (args: string[]) =>
  runProcess(CLI, [...args, '--data-dir', dataDir], { cwd: root, timeoutMs: 60_000 });
const json = async (args: string[]) => {
  const r = await cli([...args, '--json']);
  expect(r.code, `${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout);
};
const rows = (entitlementId: string) => {
  const store = openStore(path.join(dataDir, 'license.db'));
  try {
    return store.installations.list({ entitlementId, afterSeq: 0, limit: 1000 });
  } finally {
    store.close();
  }
};
const create = (quotas: string) =>
  json([
    'entitlements',
    'create',
    '--tenant',
    'acme',
    '--product',
    'bi',
    '--type',
    'feature_based',
    '--quotas',
    quotas,
    '--starts',
    '2024-01-01T00:00:00Z',
    '--ends',
    '2099-01-01T00:00:00Z',
  ]);

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-inst-'));
  dataDir = path.join(root, 'data');
  adminToken = (await json(['init'])).admin_token;
});
afterAll(() => {
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('installations commands', () => {
  it('add, list, show, set-version and remove; check and usage show the quota; a full quota exits 1', async () => {
    const e = await create('dashboards=2');
    expect(e.policy_json.quotas).toEqual({ dashboards: 2 });
    const id = e.entitlement_id as string;
    const a = await json([
      'installations',
      'add',
      id,
      'dashboards',
      'Sales Dashboard',
      '--metadata',
      '{"theme":"dark"}',
      '--installed-version',
      '1.0.0',
      '--principal',
      'alice',
      '--idempotency-key',
      'k1',
    ]);
    expect(a).toMatchObject({
      entitlement_id: id,
      quota: 'dashboards',
      name: 'Sales Dashboard',
      metadata: { theme: 'dark' },
      version: '1.0.0',
      principal_id: 'alice',
    });
    const again = await cli([
      'installations',
      'add',
      id,
      'dashboards',
      'Sales Dashboard',
      '--metadata',
      '{"theme":"dark"}',
      '--installed-version',
      '1.0.0',
      '--principal',
      'alice',
      '--idempotency-key',
      'k1',
    ]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      `already installed: ${a.installation_id} dashboards "Sales Dashboard" v1.0.0 on ${id}\n`,
    );
    await json(['installations', 'add', id, 'dashboards', 'Ops']);
    const full = await cli(['installations', 'add', id, 'dashboards', 'Third']);
    expect(full.code).toBe(1);
    expect(full.stderr).toContain(`error[quota_exhausted]: ${id} uses 2 of 2 dashboards`);
    const bad = await cli(['installations', 'add', id, 'dashboards', 'X', '--metadata', '{nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--metadata is not valid JSON');
    expect(rows(id).map((r) => r.name)).toEqual(['Sales Dashboard', 'Ops']);

    expect(await json(['entitlements', 'check', id])).toMatchObject({
      quotas: { dashboards: { limit: 2, used: 2, remaining: 0 } },
    });
    expect((await cli(['entitlements', 'check', id])).stdout).toBe(
      'can lease; ∞ seats free (active); dashboards: 0 of 2 left\n',
    );
    expect((await json(['entitlements', 'usage', id])).quotas).toEqual({
      dashboards: { limit: 2, used: 2, remaining: 0 },
    });
    const csv = await cli(['entitlements', 'usage', id, '--csv']);
    expect(csv.stdout.split('\r\n')[0]).toMatch(
      /,quota_dashboards_installed,quota_dashboards_removed,quota_dashboards_in_use,quota_dashboards_limit$/,
    );
    const list = await json(['installations', 'list', '--entitlement', id]);
    expect(list.data.map((i: any) => i.name)).toEqual(['Sales Dashboard', 'Ops']);
    const table = await cli(['installations', 'list', '--quota', 'dashboards', '--tenant', 'acme']);
    expect(table.stdout).toContain('Sales Dashboard');
    expect((await json(['installations', 'set-version', a.installation_id, '1.1.0'])).version).toBe(
      '1.1.0',
    );
    expect((await json(['installations', 'show', a.installation_id])).version).toBe('1.1.0');
    const removed = await cli(['installations', 'remove', id, a.installation_id]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain(`removed ${a.installation_id}`);
    expect(rows(id).map((r) => r.name)).toEqual(['Ops']);
    const missing = await cli(['installations', 'show', a.installation_id]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error[not_found]');
  });
});

describe('installations commands name what was typed', () => {
  it('add and set-version refuse a bad field by its flag or argument, nothing written', async () => {
    const id = (await create('dashboards=3')).entitlement_id as string;
    const made = await json(['installations', 'add', id, 'dashboards', 'Kept']);
    const add = (name: string, ...flags: string[]) =>
      cli(['installations', 'add', id, 'dashboards', name, ...flags]);
    const cases: Array<[Promise<{ code: number | null; stderr: string }>, string]> = [
      [add('X', '--installed-version', 'a b'), '--installed-version: must not contain spaces'],
      [add('X', '--principal', 'a b'), '--principal: must not contain spaces'],
      [add('X', '--idempotency-key', 'a b'), '--idempotency-key: must not contain spaces'],
      [add('X', '--metadata', '[1]'), '--metadata: must be a JSON object'],
      [add('   '), 'NAME: must hold a visible character'],
      [add(''), 'NAME: must be 1 to 200 characters'],
      [
        cli(['installations', 'set-version', made.installation_id, 'a b']),
        'error[invalid_request]: invalid version: VERSION: must not contain spaces',
      ],
    ];
    for (const [run, said] of cases) {
      const r = await run;
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toContain(said);
      expect(r.stderr).not.toMatch(
        /(?:^|: )(version|principal_id|idempotency_key|metadata|name):/m,
      );
    }
    expect(rows(id).map((r) => [r.name, r.version])).toEqual([['Kept', null]]);
  });

  it('a blank name is refused in the same words by the CLI and over HTTP (one rule)', async () => {
    const id = (await create('dashboards=3')).entitlement_id as string;
    const server = await startServe(CLI, ['--data-dir', dataDir, '--port', '0', '--no-sync-dir'], {
      cwd: root,
      timeoutMs: 60_000,
    });
    try {
      for (const name of ['', '  ']) {
        const r = await fetch(`${server.base}/v1/entitlements/${id}/installations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ quota: 'dashboards', name }),
        });
        expect(r.status).toBe(400);
        const http = ((await r.json()) as any).error;
        const c = await cli(['installations', 'add', id, 'dashboards', name, '--json']);
        expect(c.code).not.toBe(0);
        const local = JSON.parse(c.stdout).error;
        expect(local.code).toBe('invalid_request');
        expect(local.details).toEqual(http.details);
        const [issue] = http.details.issues;
        expect(issue.path).toBe('name');
        expect(http.message).toBe(`name: ${issue.message}`);
        expect(local.message).toBe(`invalid installation: NAME: ${issue.message}`);
      }
    } finally {
      await server.stop();
    }
    expect(rows(id)).toEqual([]);
  });
});

describe('the quota limit across processes', () => {
  it('holds exactly when 8 CLI processes and 60 HTTP requests to a running server install at once', async () => {
    const id = (await create('dashboards=5')).entitlement_id as string;
    const server = await startServe(CLI, ['--data-dir', dataDir, '--port', '0', '--no-sync-dir'], {
      cwd: root,
      timeoutMs: 60_000,
    });
    try {
      const http = Array.from({ length: 60 }, (_, i) =>
        fetch(`${server.base}/v1/entitlements/${id}/installations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ quota: 'dashboards', name: `http-${i}` }),
        }).then(async (r) => ({ status: r.status, code: ((await r.json()) as any).error?.code })),
      );
      const procs = Array.from({ length: 8 }, (_, i) =>
        cli(['installations', 'add', id, 'dashboards', `cli-${i}`, '--json']),
      );
      const answers = await Promise.all(http);
      const runs = await Promise.all(procs);
      const made =
        answers.filter((a) => a.status === 201).length + runs.filter((r) => r.code === 0).length;
      expect(made).toBe(5);
      for (const a of answers.filter((x) => x.status !== 201))
        expect([a.status, a.code]).toEqual([409, 'quota_exhausted']);
      for (const r of runs.filter((x) => x.code !== 0))
        expect(JSON.parse(r.stdout || r.stderr).error.code).toBe('quota_exhausted');
      expect(rows(id)).toHaveLength(5);
    } finally {
      await server.stop();
    }
  });
});

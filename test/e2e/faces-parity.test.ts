// HTTP and CLI show the same thing: every CLI command's --json output against its HTTP twin on the
// real server (spawned), over one data directory. Reads are compared exactly; writes are made on
// twin resources and compared with ids, times, secrets and actors masked (they differ by nature).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killStrays, runProcess, startServe, type ServeHandle } from '../spawn.ts';
import { openStore } from '../../src/storage/store.ts';

let root: string;
let dataDir: string;
let admin: string;
let server: ServeHandle;

async function cli(args: string[]): Promise<{ code: number | null; out: any; text: string }> {
  const r = await runProcess(CLI, [...args, '--json', '--data-dir', dataDir], { cwd: root });
  let out: unknown;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    out = undefined;
  }
  return { code: r.code, out, text: r.stdout };
}

async function cliOk(args: string[]): Promise<any> {
  const r = await cli(args);
  expect(r.code, `${args.join(' ')}: ${r.text}`).toBe(0);
  return r.out;
}

async function http(
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(`${server.base}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${admin}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text };
}

async function httpOk(method: string, p: string, body?: unknown): Promise<any> {
  const r = await http(method, p, body);
  expect(r.status, `${method} ${p}: ${r.text}`).toBeLessThan(300);
  return r.body;
}

/** Masks what differs between two twin writes by nature: ids, times, secrets, the actor. */
function masked(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(masked);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, k === 'assigned_by' ? '<actor>' : masked(x)]),
    );
  if (typeof v !== 'string') return v;
  if (/^(ent|seat|lease|tok|inst)_[A-Za-z0-9_-]+$/.test(v)) return '<id>';
  if (/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(v)) return '<time>';
  if (/^bpls_/.test(v)) return '<secret>';
  if (/^twin-/.test(v)) return '<twin>';
  return v;
}

const future = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();
const entitlement = (over: Record<string, unknown> = {}) => ({
  tenant_id: 'acme',
  product_id: 'cad',
  policy_json: { type: 'per_user', max_seats: 5, features: ['export'] },
  starts_at: '2024-01-01T00:00:00Z',
  ends_at: '2099-01-01T00:00:00Z',
  ...over,
});

/** The same entitlement made by each face: [made by the CLI, made over HTTP]. */
async function twins(over: Record<string, unknown> = {}): Promise<[any, any]> {
  const e = entitlement(over);
  const p = e.policy_json as Record<string, unknown>;
  const c = await cliOk([
    'entitlements',
    'create',
    '--tenant',
    e.tenant_id as string,
    '--product',
    e.product_id as string,
    '--starts',
    e.starts_at as string,
    '--ends',
    e.ends_at as string,
    '--policy',
    JSON.stringify(p),
  ]);
  const h = await httpOk('POST', '/v1/entitlements', e);
  return [c, h];
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'bpls-parity-'));
  dataDir = path.join(root, 'data');
  admin = (await cliOk(['init'])).admin_token;
  server = await startServe(CLI, ['--data-dir', dataDir, '--port', '0']);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  killStrays();
  rmSync(root, { recursive: true, force: true });
});

describe('every CLI --json output equals its HTTP twin', () => {
  it('entitlements: create, show (with its usage), list, update, lifecycle, renew; a missing one', async () => {
    const [c, h] = await twins();
    expect(masked(c)).toEqual(masked(h));
    expect(c.policy_json).toEqual(h.policy_json);

    // The example fault: `entitlements show` lacked the usage GET /v1/entitlements/{id} has.
    await httpOk('POST', '/v1/license/lease', {
      tenant_id: 'acme',
      product_id: 'cad',
      subject_type: 'user',
      subject_id: 'alice',
      entitlement_id: h.entitlement_id,
    });
    const shownHttp = await httpOk('GET', `/v1/entitlements/${h.entitlement_id}`);
    const shownCli = await cliOk(['entitlements', 'show', h.entitlement_id]);
    expect(shownCli).toEqual(shownHttp);
    expect(shownCli.usage).toEqual({ active_leases: 1, seats_assigned: 1, max_seats: 5 });

    expect(await cliOk(['entitlements', 'list', '--limit', '1'])).toEqual(
      await httpOk('GET', '/v1/entitlements?limit=1'),
    );
    const page1 = await httpOk('GET', '/v1/entitlements?limit=1');
    expect(page1.next_cursor).not.toBeNull();
    expect(
      await cliOk(['entitlements', 'list', '--limit', '1', '--cursor', page1.next_cursor]),
    ).toEqual(await httpOk('GET', `/v1/entitlements?limit=1&cursor=${page1.next_cursor}`));

    const ends = future(400);
    const updatedCli = await cliOk(['entitlements', 'update', c.entitlement_id, '--ends', ends]);
    const updatedHttp = await httpOk('PATCH', `/v1/entitlements/${h.entitlement_id}`, {
      ends_at: ends,
    });
    expect(masked(updatedCli)).toEqual(masked(updatedHttp));
    expect(updatedCli.ends_at).toBe(updatedHttp.ends_at);

    for (const action of ['suspend', 'resume', 'revoke'] as const) {
      const [ac, ah] = await twins();
      if (action === 'resume') {
        await cliOk(['entitlements', 'suspend', ac.entitlement_id]);
        await httpOk('POST', `/v1/entitlements/${ah.entitlement_id}/suspend`);
      }
      const outCli = await cliOk(['entitlements', action, ac.entitlement_id]);
      const outHttp = await httpOk('POST', `/v1/entitlements/${ah.entitlement_id}/${action}`);
      expect(masked(outCli), action).toEqual(masked(outHttp));
    }

    const renewedCli = await cliOk(['entitlements', 'renew', c.entitlement_id, '--months', '2']);
    const renewedHttp = await httpOk('POST', `/v1/entitlements/${h.entitlement_id}/renew`, {
      period_months: 2,
    });
    expect(masked(renewedCli)).toEqual(masked(renewedHttp));
    expect(renewedCli.ends_at).toBe(renewedHttp.ends_at);

    const missingCli = await cli(['entitlements', 'show', 'ent_missing']);
    const missingHttp = await http('GET', '/v1/entitlements/ent_missing');
    expect(missingCli.code).toBe(1);
    expect(missingHttp.status).toBe(404);
    expect(missingCli.out.error.code).toBe(missingHttp.body.error.code);
    expect(missingCli.out.error.message).toBe(missingHttp.body.error.message);
  }, 120_000);

  it('entitlements: usage (JSON and CSV), check (newcomer, holder, another type), import', async () => {
    const [, h] = await twins({ product_id: 'usage' });
    const id = h.entitlement_id as string;
    await httpOk('POST', '/v1/license/lease', {
      tenant_id: 'acme',
      product_id: 'usage',
      subject_type: 'user',
      subject_id: 'bob',
      entitlement_id: id,
    });
    const usage = await httpOk('GET', `/v1/entitlements/${id}/usage`);
    expect(await cliOk(['entitlements', 'usage', id])).toEqual(usage);
    expect(usage.activity.grants_30d).toBe(1);
    const csv = await http('GET', `/v1/entitlements/${id}/usage.csv?days=3`);
    const csvCli = await runProcess(CLI, [
      'entitlements',
      'usage',
      id,
      '--csv',
      '--days',
      '3',
      '--data-dir',
      dataDir,
    ]);
    expect(csvCli.stdout).toBe(csv.text);
    expect(csv.text.split('\r\n')[1]).toMatch(/,acme,usage,1,0,0,0,1,1,0,0$/);

    expect(await cliOk(['entitlements', 'check', id])).toEqual(
      await httpOk('GET', `/v1/entitlements/${id}/check`),
    );
    const holder = await httpOk('GET', `/v1/entitlements/${id}/check?subject_id=BOB`);
    expect(holder).toMatchObject({ can_lease: true, remaining_seats: 4 });
    expect(await cliOk(['entitlements', 'check', id, '--subject', 'BOB'])).toEqual(holder);
    expect(
      await cliOk(['entitlements', 'check', id, '--subject', 'bob', '--subject-type', 'machine']),
    ).toEqual(
      await httpOk('GET', `/v1/entitlements/${id}/check?subject_id=bob&subject_type=machine`),
    );
    // A subject type that is neither: the same refusal from both faces, nothing answered.
    const badCli = await cli([
      'entitlements',
      'check',
      id,
      '--subject',
      'bob',
      '--subject-type',
      'robot',
    ]);
    const badHttp = await http(
      'GET',
      `/v1/entitlements/${id}/check?subject_id=bob&subject_type=robot`,
    );
    expect(badHttp.status).toBe(400);
    expect(badCli.code).not.toBe(0);
    expect(badCli.out.error.code).toBe('invalid_request');
    expect(badCli.out.error.details.issues).toEqual(badHttp.body.error.details.issues);

    const file = path.join(root, 'import.json');
    writeFileSync(
      file,
      JSON.stringify({ entitlements: [entitlement({ external_id: 'twin-cli' }), entitlement()] }),
    );
    const importedCli = await cliOk(['entitlements', 'import', file]);
    const importedHttp = await httpOk('POST', '/v1/entitlements/import', {
      entitlements: [entitlement({ external_id: 'twin-http' }), entitlement()],
    });
    expect(masked(importedCli)).toEqual(masked(importedHttp));
    expect(importedHttp).toMatchObject({
      created: 2,
      total: 2,
      items: [{ index: 0, action: 'created' }, { index: 1 }],
    });
  }, 120_000);

  it('leases: list (paged), revoke', async () => {
    const [, h] = await twins({
      product_id: 'leases',
      policy_json: { type: 'concurrent', max_seats: 9 },
    });
    const leases: string[] = [];
    for (const subject of ['twin-carol', 'twin-dave', 'twin-erin']) {
      const r = await httpOk('POST', '/v1/license/lease', {
        tenant_id: 'acme',
        product_id: 'leases',
        subject_type: 'machine',
        subject_id: subject,
        entitlement_id: h.entitlement_id,
      });
      leases.push(r.lease_id);
    }
    const q = `entitlement_id=${h.entitlement_id}&limit=2`;
    const page = await httpOk('GET', `/v1/leases?${q}`);
    expect(page.data).toHaveLength(2);
    expect(
      await cliOk(['leases', 'list', '--entitlement', h.entitlement_id, '--limit', '2']),
    ).toEqual(page);
    expect(
      await cliOk([
        'leases',
        'list',
        '--entitlement',
        h.entitlement_id,
        '--cursor',
        page.next_cursor,
      ]),
    ).toEqual(
      await httpOk(
        'GET',
        `/v1/leases?entitlement_id=${h.entitlement_id}&cursor=${page.next_cursor}`,
      ),
    );

    const revokedCli = await cliOk(['leases', 'revoke', leases[0]!]);
    const revokedHttp = await httpOk('POST', `/v1/leases/${leases[1]}/revoke`);
    expect(masked(revokedCli)).toEqual(masked(revokedHttp));
    expect(revokedCli.state).toBe('revoked');
  }, 120_000);

  it('seats: assign, list (paged), revoke', async () => {
    const [c, h] = await twins({ product_id: 'seats' });
    const assignedCli = await cliOk(['seats', 'assign', c.entitlement_id, 'frank', 'grace']);
    const assignedHttp = await httpOk('POST', `/v1/entitlements/${h.entitlement_id}/seats/bulk`, {
      subjects: [
        { subject_type: 'user', subject_id: 'frank' },
        { subject_type: 'user', subject_id: 'grace' },
      ],
    });
    expect(masked(assignedCli)).toEqual(masked(assignedHttp));
    expect(assignedCli.assigned).toBe(2);

    const page = await httpOk('GET', `/v1/entitlements/${h.entitlement_id}/seats?limit=1`);
    expect(await cliOk(['seats', 'list', h.entitlement_id, '--limit', '1'])).toEqual(page);
    expect(await cliOk(['seats', 'list', h.entitlement_id, '--cursor', page.next_cursor])).toEqual(
      await httpOk('GET', `/v1/entitlements/${h.entitlement_id}/seats?cursor=${page.next_cursor}`),
    );

    const revokedCli = await cliOk([
      'seats',
      'revoke',
      c.entitlement_id,
      assignedCli.data[0].seat_id,
    ]);
    const revokedHttp = await httpOk(
      'DELETE',
      `/v1/entitlements/${h.entitlement_id}/seats/${assignedHttp.data[0].seat_id}`,
    );
    expect(masked(revokedCli)).toEqual(masked(revokedHttp));
    expect(revokedCli).toMatchObject({ revoked: true, ended_lease_id: null });
  }, 120_000);

  it('installations: add (and again by its key), list (paged), show, set-version, remove; quotas in show, check and usage', async () => {
    const [c, h] = await twins({
      product_id: 'quotas',
      policy_json: { type: 'feature_based', quotas: { dashboards: 3 } },
    });
    const addCli = (key: string) =>
      cliOk([
        'installations',
        'add',
        c.entitlement_id,
        'dashboards',
        'Sales',
        '--metadata',
        '{"theme":"dark"}',
        '--installed-version',
        '1.0',
        '--principal',
        'alice',
        '--idempotency-key',
        key,
      ]);
    const addHttp = (key: string) =>
      httpOk('POST', `/v1/entitlements/${h.entitlement_id}/installations`, {
        quota: 'dashboards',
        name: 'Sales',
        metadata: { theme: 'dark' },
        version: '1.0',
        principal_id: 'alice',
        idempotency_key: key,
      });
    const ic = await addCli('twin-k');
    const ih = await addHttp('twin-k');
    expect(masked(ic)).toEqual(masked(ih));
    expect(await addCli('twin-k')).toEqual(ic);
    expect(await addHttp('twin-k')).toEqual(ih);
    await addHttp('twin-2');

    const page = await httpOk(
      'GET',
      `/v1/installations?entitlement_id=${h.entitlement_id}&limit=1`,
    );
    expect(
      await cliOk(['installations', 'list', '--entitlement', h.entitlement_id, '--limit', '1']),
    ).toEqual(page);
    expect(
      await cliOk([
        'installations',
        'list',
        '--entitlement',
        h.entitlement_id,
        '--cursor',
        page.next_cursor,
      ]),
    ).toEqual(
      await httpOk(
        'GET',
        `/v1/installations?entitlement_id=${h.entitlement_id}&cursor=${page.next_cursor}`,
      ),
    );
    expect(await cliOk(['installations', 'show', ih.installation_id])).toEqual(
      await httpOk('GET', `/v1/installations/${ih.installation_id}`),
    );
    for (const [args, p] of [
      [['entitlements', 'show', h.entitlement_id], `/v1/entitlements/${h.entitlement_id}`],
      [['entitlements', 'check', h.entitlement_id], `/v1/entitlements/${h.entitlement_id}/check`],
      [['entitlements', 'usage', h.entitlement_id], `/v1/entitlements/${h.entitlement_id}/usage`],
    ] as const)
      expect(await cliOk([...args])).toEqual(await httpOk('GET', p));
    expect((await httpOk('GET', `/v1/entitlements/${h.entitlement_id}/check`)).quotas).toEqual({
      dashboards: { limit: 3, used: 2, remaining: 1 },
    });

    const vc = await cliOk(['installations', 'set-version', ic.installation_id, '2.0']);
    const vh = await httpOk('PATCH', `/v1/installations/${ih.installation_id}`, { version: '2.0' });
    expect(masked(vc)).toEqual(masked(vh));
    const rc = await cliOk(['installations', 'remove', c.entitlement_id, ic.installation_id]);
    const rh = await httpOk(
      'DELETE',
      `/v1/entitlements/${h.entitlement_id}/installations/${ih.installation_id}`,
    );
    expect(masked(rc)).toEqual(masked(rh));
    expect(rc.version).toBe('2.0');
  }, 120_000);

  it('tokens: create, list, revoke; keys show', async () => {
    const madeCli = await cliOk(['tokens', 'create', '--name', 'twin', '--role', 'reader']);
    const madeHttp = await httpOk('POST', '/v1/tokens', { name: 'twin', role: 'reader' });
    expect(masked(madeCli)).toEqual(masked(madeHttp));
    expect(madeCli.token).toMatch(/^bpls_/);

    // The HTTP call stamps the admin token's last_used_at first; the CLI reads it after.
    const listed = await httpOk('GET', '/v1/tokens');
    expect(await cliOk(['tokens', 'list'])).toEqual(listed);
    expect(listed.data.some((t: any) => 'token' in t)).toBe(false);

    const revokedCli = await cliOk(['tokens', 'revoke', madeCli.token_id]);
    const revokedHttp = await httpOk('DELETE', `/v1/tokens/${madeHttp.token_id}`);
    expect(masked(revokedCli)).toEqual(masked(revokedHttp));
    expect(revokedCli.status).toBe('revoked');

    const keys = await httpOk('GET', '/v1/license/keys');
    expect(await cliOk(['keys', 'show'])).toEqual(keys);

    // Every write above reached the one database both faces use.
    const store = openStore(path.join(dataDir, 'license.db'));
    try {
      const tokens = store.apiTokens.list();
      expect(tokens.filter((t) => t.name === 'twin' && t.revokedAt !== null)).toHaveLength(2);
    } finally {
      store.close();
    }
  }, 120_000);
});

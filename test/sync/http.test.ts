// The sync and audit routes through app.request(): same rules as the CLI.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { verifyExport } from '../../src/sync/vendor.ts';
import { LIMITS } from '../../src/sync/format.ts';

let w: World;
afterEach(() => w?.h.close());

async function upload(
  body: string | Uint8Array | ReadableStream<Uint8Array>,
  query = '',
  token: string | null = w.h.admin,
) {
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await w.h.app.request(`/v1/sync/import${query}`, {
    method: 'POST',
    headers,
    body: body as RequestInit['body'],
    ...({ duplex: 'half' } as object),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('POST /v1/sync/import', () => {
  it('imports the raw bundle sent as the body', async () => {
    w = createWorld();
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a')] }));
    const r = await upload(bytes);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'applied', seq: 1, added: 1 });
    const audit = w.h.store.audit.page(0, 100).at(-1)!;
    expect(audit.action).toBe('sync.import');
    expect(audit.actor).toMatch(/^token:tok_/);
    expect(JSON.parse(audit.details).file).toMatch(/^upload:sha256:[0-9a-f]{64}$/);
    expect((await upload(bytes)).body.status).toBe('unchanged');
  });

  it('dry_run=true answers the diff and changes nothing', async () => {
    w = createWorld();
    const before = w.h.snapshot();
    const r = await upload(
      readFileSync(w.sign(1, { entitlements: [ent('ent_a')] })),
      '?dry_run=true',
    );
    expect(r.body).toMatchObject({
      status: 'dry_run',
      dry_run: true,
      added: 1,
      diff: { added: ['ent_a'] },
    });
    expect(w.h.snapshot()).toEqual(before);
  });

  it('answers a refusal with 422 bundle_rejected naming the rule, audited, nothing else changed', async () => {
    w = createWorld();
    const before = w.h.snapshot();
    const bytes = readFileSync(
      w.sign(1, { entitlements: [ent('ent_a')] }, { serverId: 'srv_other' }),
    );
    const r = await upload(bytes);
    expect(r.status).toBe(422);
    expect(r.body.error).toMatchObject({
      code: 'bundle_rejected',
      details: { rule: 'wrong_server' },
      request_id: expect.stringMatching(/^req_/),
    });
    const after = w.h.snapshot();
    expect((after.audit_log as any[]).at(-1).action).toBe('sync.import_rejected');
    expect({ ...after, audit_log: null }).toEqual({ ...before, audit_log: null });
    for (const body of ['', '{}', 'BPSYNC/1\n']) {
      const bad = await upload(body);
      expect(bad.status, JSON.stringify(body)).toBe(422);
      expect(bad.body.error.details.rule).toBe('malformed');
    }
  });

  it('refuses a body over the bundle size cap while it arrives (too_large), without holding it in memory', async () => {
    w = createWorld();
    const chunk = new Uint8Array(1 << 20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > LIMITS.fileBytes + (2 << 20)) controller.close();
        else {
          sent += chunk.length;
          controller.enqueue(chunk);
        }
      },
    });
    const r = await upload(stream);
    expect(r.status).toBe(422);
    expect(r.body.error).toMatchObject({ code: 'bundle_rejected', details: { rule: 'too_large' } });
    expect(sent).toBeLessThan(LIMITS.fileBytes + (3 << 20));
  });

  it('is refused to a reader token (403) and to no token (401)', async () => {
    w = createWorld();
    const bytes = readFileSync(w.sign(1, { entitlements: [ent('ent_a')] }));
    expect((await upload(bytes, '', w.h.reader)).status).toBe(403);
    expect((await upload(bytes, '', null)).status).toBe(401);
    expect(w.bundleState()).toEqual({});
  });

  it('refuses an unknown query parameter', async () => {
    w = createWorld();
    const r = await upload('x', '?dryrun=1');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
  });
});

describe('POST /v1/sync/export and GET /v1/sync/status', () => {
  it('answers the signed export, which the vendor verifies', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const res = await w.h.app.request('/v1/sync/export', {
      method: 'POST',
      headers: { authorization: `Bearer ${w.h.admin}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('x-bpsync-seq')).toBe('1');
    expect(res.headers.get('content-disposition')).toBe(
      `attachment; filename="${w.h.info.server_id}-export-000001.bpsync"`,
    );
    const file = join(w.h.dir, 'got.bpsync');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    expect(await verifyExport(file, w.h.info.public_key)).toMatchObject({
      ok: true,
      seq: 1,
      enrolment: true,
    });
    const status = await w.h.req('GET', '/v1/sync/status');
    expect(status.body).toMatchObject({
      server_id: w.h.info.server_id,
      vendor_keys: [{ kid: w.vendor.kid, public_key: w.vendor.publicPaserk }],
      allow_manual_provisioning: true,
      last_import: { seq: 1 },
      last_export: { seq: 1, file: null },
      bundle_entitlements: { active: 1, suspended: 0, revoked: 0 },
    });
  });
});

describe('GET /v1/audit', () => {
  it('pages the audit log by sequence', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const all = w.h.store.audit.page(0, 1000);
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const r = await w.h.req(
        'GET',
        `/v1/audit?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        undefined,
        w.h.reader,
      );
      expect(r.status).toBe(200);
      expect(r.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.data.map((x: any) => x.seq));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(all.map((a) => a.seq));
    const one = (await w.h.req('GET', '/v1/audit?limit=500')).body;
    expect(one.head).toEqual(w.h.store.audit.head());
    expect(one.data.at(-1)).toMatchObject({
      action: 'sync.import',
      details: { seq: 1, added: 1 },
      hash: all.at(-1)!.hash,
    });
    for (const q of ['limit=0', 'limit=501', 'cursor=abc', 'bogus=1'])
      expect((await w.h.req('GET', `/v1/audit?${q}`)).status, q).toBe(400);
  });
});

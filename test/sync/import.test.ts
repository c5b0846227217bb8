// Importing vendor bundles in process: real SQLite, real signatures; only the clock is fake.
import { appendFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createWorld, ent, type World } from './world.ts';
import { generateSigningKey } from '../../src/tokens/keys.ts';
import { LIMITS } from '../../src/sync/format.ts';
import { dropTriggers, seedEntitlement } from '../helpers.ts';

let w: World;
afterEach(() => w?.h.close());

const HOUR = 3_600_000;

describe('applying a bundle', () => {
  it('creates bundle-managed entitlements, applies revocations and settings, and audits it in the same transaction', async () => {
    w = createWorld();
    const file = w.sign(1, {
      entitlements: [
        ent('ent_a'),
        ent('ent_b', { policy_json: { type: 'per_user', max_seats: 3 } }),
      ],
      revoked: ['ent_old'],
      settings: { default_lease_ttl_seconds: 600 },
    });
    const r = await w.importFile(file, { name: 'b1.bpsync' });
    expect(r).toMatchObject({
      status: 'applied',
      seq: 1,
      added: 2,
      changed: 0,
      revoked: 1,
      unchanged: 0,
      suspended: 0,
      ignored: 0,
      settings: ['default_lease_ttl_seconds'],
      seats_cut: [],
    });
    const a = w.h.services.entitlements.get('ent_a');
    expect(a).toMatchObject({
      source: 'bundle',
      status: 'active',
      rev: 1,
      tenantId: 'acme',
      productId: 'cad',
      policy: { type: 'concurrent', max_seats: 5, features: ['a', 'b'] },
    });
    const audit = w.h.store.audit.page(0, 100).at(-1)!;
    expect(audit.action).toBe('sync.import');
    expect(JSON.parse(audit.details)).toMatchObject({
      seq: 1,
      added: 2,
      revoked: 1,
      file: 'b1.bpsync',
      ids: { added: ['ent_a', 'ent_b'], revoked: ['ent_old'] },
    });
    expect(w.h.services.sync.status()).toMatchObject({
      last_import: { seq: 1, records: 4 },
      bundle_entitlements: { active: 2, suspended: 0, revoked: 0 },
      permanent_revocations: 1,
      default_lease_ttl_seconds: 600,
    });
  });

  it('leases on a bundle entitlement, which an admin cannot edit (managed_by_bundle)', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    const lease = await w.h.req(
      'POST',
      '/v1/license/lease',
      { tenant_id: 'acme', product_id: 'cad', subject_type: 'user', subject_id: 'u1' },
      null,
    );
    expect(lease.status).toBe(201);
    const before = w.h.snapshot();
    for (const [method, path, body] of [
      ['PUT', '/v1/entitlements/ent_a', { policy_json: { type: 'concurrent', max_seats: 50 } }],
      ['POST', '/v1/entitlements/ent_a/suspend', undefined],
      ['POST', '/v1/entitlements/ent_a/revoke', undefined],
      ['POST', '/v1/entitlements/ent_a/renew', { period_months: 12 }],
    ] as const) {
      const r = await w.h.req(method, path, body);
      expect(r.status, `${method} ${path}`).toBe(409);
      expect(r.body.error.code).toBe('managed_by_bundle');
    }
    expect(w.h.snapshot()).toEqual(before);
  });

  it('re-importing the same bundle is a no-op: exit 0, "unchanged", nothing written', async () => {
    w = createWorld();
    const file = w.sign(1, { entitlements: [ent('ent_a')] });
    await w.importFile(file);
    const before = w.h.snapshot();
    w.h.clock.advance(40 * 86_400_000); // even after it expired: it is the bundle already applied
    expect(await w.importFile(file)).toMatchObject({
      status: 'unchanged',
      seq: 1,
      added: 0,
      changed: 0,
    });
    expect(w.h.snapshot()).toEqual(before);
  });

  it('treats a bundle as a snapshot: unlisted entitlements are suspended, listed again they come back', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    const r2 = await w.importFile(w.sign(2, { entitlements: [ent('ent_a')] }));
    expect(r2).toMatchObject({ added: 0, changed: 0, unchanged: 1, suspended: 1 });
    expect(w.h.services.entitlements.get('ent_b').status).toBe('suspended');
    const refused = await w.h.req(
      'POST',
      '/v1/license/lease',
      {
        tenant_id: 'acme',
        product_id: 'cad',
        subject_type: 'user',
        subject_id: 'u1',
        entitlement_id: 'ent_b',
      },
      null,
    );
    expect(refused.body.error).toMatchObject({
      code: 'entitlement_inactive',
      details: { reason: 'suspended' },
    });
    const r3 = await w.importFile(w.sign(3, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    expect(r3).toMatchObject({ changed: 1, unchanged: 1, suspended: 0 });
    expect(w.h.services.entitlements.get('ent_b').status).toBe('active');
  });

  it('applies a higher rev and reports seats cut below current use, without cutting leases', async () => {
    w = createWorld();
    await w.importFile(
      w.sign(1, {
        entitlements: [ent('ent_a', { policy_json: { type: 'concurrent', max_seats: 3 } })],
      }),
    );
    for (const u of ['u1', 'u2', 'u3'])
      expect(
        (
          await w.h.req(
            'POST',
            '/v1/license/lease',
            { tenant_id: 'acme', product_id: 'cad', subject_type: 'user', subject_id: u },
            null,
          )
        ).status,
      ).toBe(201);
    const r = await w.importFile(
      w.sign(2, {
        entitlements: [ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 1 } })],
      }),
    );
    expect(r).toMatchObject({
      changed: 1,
      seats_cut: [{ entitlement_id: 'ent_a', max_seats: 1, in_use: 3 }],
    });
    expect(w.h.services.entitlements.get('ent_a')).toMatchObject({
      rev: 2,
      policy: { max_seats: 1 },
    });
    expect(w.h.store.leases.counters('ent_a').activeLeases).toBe(3);
  });

  it('refuses a rev that goes back (rollback) and a changed entitlement whose rev did not move (malformed)', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a', { rev: 5 })] }));
    await w.expectRefused(
      w.sign(2, { entitlements: [ent('ent_a', { rev: 4 })] }),
      'rollback',
      /ent_a has rev 4, older than the rev 5/,
    );
    await w.expectRefused(
      w.sign(2, { entitlements: [ent('ent_a', { rev: 5, ends_at: '2031-01-01T00:00:00Z' })] }),
      'malformed',
      /must raise rev with every change/,
    );
  });

  it('refuses an entitlement id that exists as a manual entitlement', async () => {
    w = createWorld();
    const manual = (await w.h.req('POST', '/v1/entitlements', seedEntitlement)).body
      .entitlement_id as string;
    await w.expectRefused(
      w.sign(1, { entitlements: [ent(manual)] }),
      'malformed',
      /is a manual entitlement on this server; a bundle may not take it over/,
    );
    await w.expectRefused(w.sign(1, { revoked: [manual] }), 'malformed', /is a manual entitlement/);
  });

  it('refuses a bundle that moves an entitlement to another tenant', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    await w.expectRefused(
      w.sign(2, { entitlements: [ent('ent_a', { rev: 2, tenant_id: 'other' })] }),
      'malformed',
      /may not move it/,
    );
  });
});

describe('permanent revocation', () => {
  it('a revoked entitlement never comes back, in a later bundle or in the same one', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] }));
    const r2 = await w.importFile(
      w.sign(2, { entitlements: [ent('ent_b')], revoked: ['ent_a', 'ent_future'] }),
    );
    expect(r2).toMatchObject({ revoked: 2, unchanged: 1 });
    expect(w.h.services.entitlements.get('ent_a').status).toBe('revoked');
    const r3 = await w.importFile(
      w.sign(3, { entitlements: [ent('ent_a', { rev: 9 }), ent('ent_b'), ent('ent_future')] }),
    );
    expect(r3).toMatchObject({ added: 0, ignored: 2, unchanged: 1, revoked: 0 });
    expect(w.h.services.entitlements.get('ent_a').status).toBe('revoked');
    expect(() => w.h.services.entitlements.get('ent_future')).toThrow(/no entitlement/);
    const r4 = await w.importFile(w.sign(4, { entitlements: [ent('ent_c')], revoked: ['ent_c'] }));
    expect(r4.status).toBe('applied');
    expect(w.h.services.entitlements.get('ent_c').status).toBe('revoked');
    // The database refuses to forget a revocation.
    expect(() => w.h.store.db.prepare('DELETE FROM sync_revocations').run()).toThrow(/append-only/);
  });
});

describe('settings', () => {
  it('allow_manual_provisioning: false closes the manual path; true opens it again', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { settings: { allow_manual_provisioning: false } }));
    const r = await w.h.req('POST', '/v1/entitlements', seedEntitlement);
    expect(r.status).toBe(403);
    expect(r.body.error.message).toMatch(/manual provisioning is closed/);
    await w.importFile(w.sign(2, { settings: { allow_manual_provisioning: true } }));
    expect((await w.h.req('POST', '/v1/entitlements', seedEntitlement)).status).toBe(201);
  });

  it('vendor_keys replaces the pinned keys: the old key is refused afterwards, the new one works', async () => {
    w = createWorld();
    const next = generateSigningKey();
    await w.importFile(w.sign(1, { settings: { vendor_keys: [next.publicPaserk] } }));
    expect(w.h.services.sync.status().vendor_keys).toEqual([
      { kid: next.kid, public_key: next.publicPaserk },
    ]);
    await w.expectRefused(w.sign(2, {}), 'unknown_key', /not pinned/);
    expect((await w.importFile(w.sign(2, {}, { key: next, prev: w.hashes.get(1)! }))).status).toBe(
      'applied',
    );
  });

  it.each([
    ['an unknown key', { colour: 'blue' }, /unknown setting "colour"/],
    [
      'a non-boolean',
      { allow_manual_provisioning: 'no' },
      /allow_manual_provisioning: must be true or false/,
    ],
    ['an empty key list', { vendor_keys: [] }, /must list at least one key/],
    [
      'a small-order key',
      { vendor_keys: [`k4.public.${Buffer.alloc(32).toString('base64url')}`] },
      /small-order/,
    ],
    ['a malformed key', { vendor_keys: ['k4.public.AAAA'] }, /vendor key 1 is refused/],
  ])('refuses %s (malformed)', async (_name, settings, message) => {
    w = createWorld();
    await w.expectRefused(w.sign(1, { settings }), 'malformed', message);
  });
});

describe('refusals by rule', () => {
  it('replay: a seq below the last imported one', async () => {
    w = createWorld();
    const one = w.sign(1, { entitlements: [ent('ent_a')] });
    const two = w.sign(2, { entitlements: [ent('ent_a'), ent('ent_b')] });
    await w.importFile(two);
    await w.expectRefused(
      one,
      'replay',
      /bundle seq 1 is older than the last imported bundle \(seq 2\)/,
    );
  });

  it('fork: the same seq with other content', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    await w.expectRefused(
      w.sign(1, { entitlements: [ent('ent_b')] }),
      'fork',
      /a different bundle with seq 1 was imported already/,
    );
  });

  it('fork: the next seq whose prev is not the last bundle', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    await w.expectRefused(
      w.sign(2, {}, { prev: 'a'.repeat(64) }),
      'fork',
      /does not follow the bundle imported as seq 1/,
    );
  });

  it('accepts a gap in seq (a bundle lost on the way loses nothing: each is a snapshot)', async () => {
    w = createWorld();
    await w.importFile(w.sign(1, { entitlements: [ent('ent_a')] }));
    expect((await w.importFile(w.sign(4, { entitlements: [ent('ent_b')] }))).status).toBe(
      'applied',
    );
  });

  it('rollback: a higher seq signed before the last imported bundle', async () => {
    w = createWorld();
    const now = w.h.clock.now();
    await w.importFile(w.sign(2, {}, { iatMs: now - HOUR }));
    await w.expectRefused(
      w.sign(3, {}, { iatMs: now - 2 * HOUR }),
      'rollback',
      /signed at .* before the last imported bundle \(seq 2/,
    );
  });

  it('wrong_server: a bundle signed for another server', async () => {
    w = createWorld();
    await w.expectRefused(
      w.sign(1, { entitlements: [ent('ent_a')] }, { serverId: 'srv_someoneelse' }),
      'wrong_server',
      /signed for server srv_someoneelse, not this one/,
    );
  });

  it('unknown_key: a bundle signed by a key that is not pinned', async () => {
    w = createWorld();
    await w.expectRefused(
      w.sign(1, {}, { key: generateSigningKey() }),
      'unknown_key',
      /not pinned/,
    );
  });

  it('unknown_key: any bundle, while no vendor key is pinned', async () => {
    w = createWorld({ pin: false });
    const e = await w.expectRefused(w.sign(1, {}), 'unknown_key', /no vendor key is pinned/);
    expect(e.hint).toMatch(/init --vendor-key/);
  });

  it('expired: exp has passed', async () => {
    w = createWorld();
    const now = w.h.clock.now();
    await w.expectRefused(
      w.sign(1, {}, { iatMs: now - 31 * 86_400_000, expMs: now - 1000 }),
      'expired',
      /the bundle expired at/,
    );
  });

  it('clock_unsynced: iat more than 5 minutes ahead of our clock; 4 minutes is fine', async () => {
    w = createWorld();
    const now = w.h.clock.now();
    await w.expectRefused(
      w.sign(1, {}, { iatMs: now + 6 * 60_000 }),
      'clock_unsynced',
      /more than 5 minutes ahead of this server's clock/,
    );
    expect((await w.importFile(w.sign(1, {}, { iatMs: now + 4 * 60_000 }))).status).toBe('applied');
  });
});

describe('a damaged file is refused and changes nothing', () => {
  // A bundle of two records; offsets are found in the file itself.
  function bundleBytes(): { file: string; bytes: Buffer; manifestEnd: number; dots: number[] } {
    const file = w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] });
    const bytes = readFileSync(file);
    const manifestEnd = bytes.indexOf(0x0a, 9);
    const dots: number[] = [];
    for (let i = 9; i < manifestEnd; i++) if (bytes[i] === 0x2e) dots.push(i);
    return { file, bytes, manifestEnd, dots };
  }
  const flipAt = (pick: (b: ReturnType<typeof bundleBytes>) => number, rules: string[]) => ({
    pick,
    rules,
  });
  const regions: Array<[string, ReturnType<typeof flipAt>]> = [
    ['the magic', flipAt(() => 3, ['malformed'])],
    ['the LF after the magic', flipAt(() => 8, ['malformed'])],
    ['the token header (v4.public.)', flipAt(() => 10, ['malformed'])],
    ['the first "." of the token', flipAt((b) => b.dots[0]!, ['malformed'])],
    ['the claims in the token', flipAt((b) => b.dots[1]! + 20, ['bad_signature', 'malformed'])],
    ['the signature in the token', flipAt((b) => b.dots[2]! - 20, ['bad_signature', 'malformed'])],
    ['the "." before the footer', flipAt((b) => b.dots[2]!, ['malformed'])],
    ['the footer', flipAt((b) => b.dots[2]! + 5, ['malformed', 'unknown_key', 'bad_signature'])],
    [
      'the last character of the token',
      flipAt((b) => b.manifestEnd - 1, ['malformed', 'unknown_key', 'bad_signature']),
    ],
    ['the LF after the manifest', flipAt((b) => b.manifestEnd, ['malformed'])],
    ['the first payload byte', flipAt((b) => b.manifestEnd + 1, ['malformed'])],
    [
      'a payload byte in the middle',
      flipAt((b) => Math.floor((b.manifestEnd + b.bytes.length) / 2), ['malformed']),
    ],
    [
      'the LF between records',
      flipAt((b) => b.bytes.indexOf(0x0a, b.manifestEnd + 1), ['malformed']),
    ],
    ['the last byte', flipAt((b) => b.bytes.length - 1, ['malformed'])],
  ];

  it.each(regions)('a byte flipped in %s', async (_name, { pick, rules }) => {
    w = createWorld();
    const b = bundleBytes();
    const at = pick(b);
    const damaged = Buffer.from(b.bytes);
    damaged[at] = damaged[at]! ^ 0x01;
    writeFileSync(b.file, damaged);
    await w.expectRefused(b.file, rules);
    expect(w.bundleState()).toEqual({});
  });

  it.each([
    [
      'truncated in the payload',
      (b: Buffer) => b.subarray(0, b.length - 10),
      /the payload is \d+ bytes, the manifest says \d+/,
    ],
    [
      'truncated in the manifest',
      (b: Buffer) => b.subarray(0, 100),
      /no line feed after it \(the file is truncated\)/,
    ],
    [
      'one byte appended',
      (b: Buffer) => Buffer.concat([b, Buffer.from('\n')]),
      /the payload is \d+ bytes, the manifest says \d+/,
    ],
    [
      'converted to CRLF',
      (b: Buffer) => Buffer.from(b.toString('latin1').replaceAll('\n', '\r\n'), 'latin1'),
      /CRLF line ends/,
    ],
    [
      'saved with a UTF-8 BOM',
      (b: Buffer) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]),
      /byte order mark/,
    ],
    ['empty', () => Buffer.alloc(0), /the bundle file is empty/],
    [
      'another format',
      () => Buffer.from('{"entitlements": []}\n'),
      /does not start with "BPSYNC\/1\\n": it is not a BPSYNC\/1 bundle/,
    ],
  ])('a file %s', async (_name, change, message) => {
    w = createWorld();
    const file = w.sign(1, { entitlements: [ent('ent_a'), ent('ent_b')] });
    writeFileSync(file, change(readFileSync(file)));
    await w.expectRefused(file, 'malformed', message);
  });

  it('an oversized file, before reading it (too_large)', async () => {
    w = createWorld();
    const file = w.sign(1, { entitlements: [ent('ent_a')] });
    truncateSync(file, LIMITS.fileBytes + 1); // sparse: instant
    await w.expectRefused(file, 'too_large', /over the 268435456 byte limit/);
  });

  it('a manifest line over 64 KiB (too_large)', async () => {
    w = createWorld();
    const file = `${w.bundles}/long.bpsync`;
    writeFileSync(file, `BPSYNC/1\nv4.public.${'A'.repeat(70_000)}\n`);
    await w.expectRefused(file, 'too_large', /manifest line is over the 65536 byte limit/);
  });

  it('a signed manifest whose length or hash is wrong', async () => {
    w = createWorld();
    const payload = Buffer.from(`${JSON.stringify({ op: 'entitlement', ...ent('ent_a') })}\n`);
    await w.expectRefused(
      w.signRaw(1, payload, { len: payload.length + 1 }),
      'malformed',
      /the manifest says/,
    );
    await w.expectRefused(
      w.signRaw(1, payload, { sha256: 'b'.repeat(64) }),
      'malformed',
      /does not match the sha256 in the manifest/,
    );
  });
});

describe('records are checked one by one, and one bad record refuses the whole bundle', () => {
  const good = `${JSON.stringify({ op: 'entitlement', ...ent('ent_a') })}\n`;
  it.each([
    ['not JSON', `${good}{"op": "revoke",\n`, /record 2 is not valid JSON/],
    [
      'a duplicate key',
      `${good}{"op":"revoke","entitlement_id":"ent_x","entitlement_id":"ent_y"}\n`,
      /record 2 is not valid JSON: .*duplicate/,
    ],
    ['not an object', `${good}[1,2]\n`, /record 2 is not a JSON object/],
    [
      'an unknown op',
      `${good}{"op":"delete_everything"}\n`,
      /record 2: op must be entitlement, revoke or setting/,
    ],
    [
      'an unknown field',
      `${JSON.stringify({ op: 'entitlement', ...ent('ent_b'), colour: 'red' })}\n`,
      /record 1 \(entitlement\).*colour/,
    ],
    [
      'a bad policy',
      `${JSON.stringify({ op: 'entitlement', ...ent('ent_b', { policy_json: { type: 'concurrent' } }) })}\n`,
      /record 1 \(entitlement\): policy_json.max_seats: max_seats is required/,
    ],
    [
      'ends before it starts',
      `${JSON.stringify({ op: 'entitlement', ...ent('ent_b', { ends_at: '2020-01-01T00:00:00Z' }) })}\n`,
      /ends_at must be after starts_at/,
    ],
    [
      'a bad id',
      `${JSON.stringify({ op: 'entitlement', ...ent('acme-1') })}\n`,
      /entitlement_id: must be an entitlement id/,
    ],
    ['an id listed twice', `${good}${good}`, /record 2: ent_a is listed twice/],
    [
      'a setting given twice',
      '{"op":"setting","key":"allow_manual_provisioning","value":true}\n{"op":"setting","key":"allow_manual_provisioning","value":false}\n',
      /setting allow_manual_provisioning is given twice/,
    ],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from(good), Buffer.from([0x7b, 0xff, 0x7d, 0x0a])]),
      /record 2 is not valid UTF-8/,
    ],
    ['an empty line', `${good}\n`, /record 2 is not valid JSON/],
    ['no LF after the last record', good.trimEnd(), /does not end with a line feed/],
  ])('%s', async (_name, payload, message) => {
    w = createWorld();
    await w.expectRefused(w.signRaw(1, Buffer.from(payload), { records: 2 }), 'malformed', message);
  });

  it('a record count that does not match the manifest', async () => {
    w = createWorld();
    await w.expectRefused(
      w.signRaw(1, Buffer.from(good), { records: 2 }),
      'malformed',
      /holds 1 record, the manifest says 2/,
    );
    await w.expectRefused(
      w.signRaw(1, Buffer.from(good + good.replace('ent_a', 'ent_b')), { records: 1 }),
      'malformed',
      /more records than the 1 the manifest says/,
    );
  });

  it('a line over 1 MiB (too_large)', async () => {
    w = createWorld();
    const big = `${JSON.stringify({ op: 'setting', key: 'x', value: 'y'.repeat(LIMITS.lineBytes) })}\n`;
    await w.expectRefused(
      w.signRaw(1, Buffer.from(big), { records: 1 }),
      'too_large',
      /record 1 is over the 1048576 byte limit for one line/,
    );
  });

  it('the bad record may be the last of many: the first ones are rolled back', async () => {
    w = createWorld();
    let payload = '';
    for (let i = 0; i < 2000; i++)
      payload += `${JSON.stringify({ op: 'entitlement', ...ent(`ent_n${i}`) })}\n`;
    payload += '{"op":"revoke"}\n';
    await w.expectRefused(
      w.signRaw(1, Buffer.from(payload)),
      'malformed',
      /record 2001 \(revoke\): entitlement_id/,
    );
    expect(w.bundleState()).toEqual({});
  });
});

describe('dry run', () => {
  it('prints the diff (added, changed, revoked, suspended, seats cut, settings) and changes nothing', async () => {
    w = createWorld();
    await w.importFile(
      w.sign(1, {
        entitlements: [
          ent('ent_a', { policy_json: { type: 'concurrent', max_seats: 3 } }),
          ent('ent_b'),
          ent('ent_c'),
        ],
      }),
    );
    for (const u of ['u1', 'u2'])
      await w.h.req(
        'POST',
        '/v1/license/lease',
        {
          tenant_id: 'acme',
          product_id: 'cad',
          subject_type: 'user',
          subject_id: u,
          entitlement_id: 'ent_a',
        },
        null,
      );
    const before = w.h.snapshot();
    const file = w.sign(2, {
      entitlements: [
        ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 1 } }),
        ent('ent_c'),
        ent('ent_d'),
      ],
      revoked: ['ent_c'],
      settings: { allow_manual_provisioning: false },
    });
    const r = await w.importFile(file, { dryRun: true });
    expect(r).toMatchObject({
      status: 'dry_run',
      dry_run: true,
      seq: 2,
      added: 1,
      changed: 1,
      revoked: 1,
      suspended: 1,
      seats_cut: [{ entitlement_id: 'ent_a', max_seats: 1, in_use: 2 }],
      diff: {
        added: ['ent_d'],
        changed: [{ entitlement_id: 'ent_a', fields: ['policy_json', 'rev'] }],
        revoked: ['ent_c'],
        suspended: ['ent_b'],
        settings: [{ key: 'allow_manual_provisioning', from: null, to: false }],
        truncated: false,
      },
    });
    expect(w.h.snapshot()).toEqual(before);
    // A refused dry run is not audited either.
    const bad = w.sign(1, {});
    await expect(w.importFile(bad, { dryRun: true })).rejects.toMatchObject({
      details: { rule: 'fork' },
    });
    expect(w.h.snapshot()).toEqual(before);
    // And the real import does what the dry run said.
    expect(await w.importFile(file)).toMatchObject({
      status: 'applied',
      added: 1,
      changed: 1,
      revoked: 1,
      suspended: 1,
    });
  });
});

describe('order', () => {
  // Five bundles the way a vendor makes them: snapshots, revocations repeated, revs rising.
  const contents = [
    { entitlements: [ent('ent_a'), ent('ent_b')] },
    {
      entitlements: [
        ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
        ent('ent_b'),
        ent('ent_c'),
      ],
    },
    {
      entitlements: [
        ent('ent_a', { rev: 2, policy_json: { type: 'concurrent', max_seats: 9 } }),
        ent('ent_c'),
      ],
      revoked: ['ent_b'],
      settings: { allow_manual_provisioning: false },
    },
    {
      entitlements: [ent('ent_c', { rev: 2, ends_at: '2031-01-01T00:00:00Z' }), ent('ent_d')],
      revoked: ['ent_b'],
    },
    {
      entitlements: [
        ent('ent_a', { rev: 3 }),
        ent('ent_c', { rev: 2, ends_at: '2031-01-01T00:00:00Z' }),
        ent('ent_e'),
      ],
      revoked: ['ent_b', 'ent_d'],
      settings: { allow_manual_provisioning: true },
    },
  ];

  function permutations<T>(xs: T[]): T[][] {
    if (xs.length <= 1) return [xs];
    return xs.flatMap((x, i) =>
      permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]),
    );
  }

  it('every order of 5 bundles ends in the state of the highest seq', async () => {
    w = createWorld();
    const files = contents.map((c, i) => w.sign(i + 1, c));
    const template = w.h.snapshot();
    const active = (state: Record<string, any>) =>
      Object.fromEntries(Object.entries(state).filter(([, e]) => e.status === 'active'));
    // The state bundle 5 defines, reached by importing it alone.
    await w.importFile(files[4]!);
    const want = active(w.bundleState());
    expect(Object.keys(want).sort()).toEqual(['ent_a', 'ent_c', 'ent_e']);
    const orders = permutations([0, 1, 2, 3, 4]);
    expect(orders).toHaveLength(120);
    const db = w.h.store.db;
    const tables = Object.keys(template);
    for (const order of orders) {
      // Back to the empty server: every table as it was before any import.
      dropTriggers(w.h.store, 'audit_log', ['audit_log_no_delete']);
      dropTriggers(w.h.store, 'sync_revocations', ['sync_revocations_no_delete']);
      for (const t of tables) db.prepare(`DELETE FROM ${t}`).run();
      for (const t of tables)
        for (const row of template[t] as Array<Record<string, unknown>>)
          db.prepare(
            `INSERT INTO ${t} (${Object.keys(row).join(',')}) VALUES (${Object.keys(row)
              .map(() => '?')
              .join(',')})`,
          ).run(...Object.values(row));
      for (const i of order) await w.importFile(files[i]!).catch(() => undefined);
      const got = w.bundleState();
      expect(active(got), `order ${order.map((i) => i + 1).join(',')}`).toEqual(want);
      // Whatever else exists is revoked (bundle 5 lists the revocations) or suspended (listed by an older bundle only).
      for (const [id, e] of Object.entries(got))
        if (!(id in want))
          expect((e as any).status, id).toBe(
            ['ent_b', 'ent_d'].includes(id) ? 'revoked' : 'suspended',
          );
      expect(w.h.store.state.get('allow_manual_provisioning')).toBe('true');
    }
  });
});

describe('the record of imports', () => {
  it('a damaged copy of the bundle applied last is still that bundle (same manifest): a no-op, nothing applied', async () => {
    w = createWorld();
    const file = w.sign(1, { entitlements: [ent('ent_a')] });
    await w.importFile(file);
    const before = w.h.snapshot();
    appendFileSync(file, 'x');
    expect((await w.importFile(file)).status).toBe('unchanged');
    expect(w.h.snapshot()).toEqual(before);
  });
});

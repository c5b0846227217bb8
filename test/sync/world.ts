/** A server with a pinned vendor key, and a vendor that signs bundles for it: the sync tests' world. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createHarness } from '../helpers.ts';
import { AppError } from '../../src/errors.ts';
import { generateSigningKey, verifyKeyFromPaserk, type SigningKey } from '../../src/tokens/keys.ts';
import { pinAtInit } from '../../src/sync/trust.ts';
import { writeImportBundle } from '../../src/sync/vendor.ts';
import { MAGIC, sha256Hex } from '../../src/sync/format.ts';
import { IMPORT_TYP, signManifest, type Manifest } from '../../src/sync/manifest.ts';
import type { ImportOptions, ImportResult } from '../../src/sync/import.ts';

export const WORLD_NOW = '2025-06-01T12:00:00Z';

export interface Content {
  entitlements?: Array<Record<string, unknown>>;
  revoked?: string[];
  settings?: Record<string, unknown>;
}

/** A bundle entitlement with sane defaults. */
export function ent(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    entitlement_id: id,
    tenant_id: 'acme',
    product_id: 'cad',
    policy_json: { type: 'concurrent', max_seats: 5, features: ['a', 'b'] },
    starts_at: '2024-01-01T00:00:00Z',
    ends_at: '2030-01-01T00:00:00Z',
    rev: 1,
    ...over,
  };
}

export function contentRecords(c: Content): Array<Record<string, unknown>> {
  return [
    ...(c.entitlements ?? []).map((e) => ({ op: 'entitlement', ...e })),
    ...(c.revoked ?? []).map((id) => ({ op: 'revoke', entitlement_id: id })),
    ...Object.entries(c.settings ?? {}).map(([key, value]) => ({ op: 'setting', key, value })),
  ];
}

export interface SignOpts {
  iatMs?: number;
  expMs?: number;
  prev?: string | null;
  serverId?: string;
  key?: SigningKey;
  ack?: number | null;
  name?: string;
}

export type World = ReturnType<typeof createWorld>;

export function createWorld(opts: { pin?: boolean; now?: string } = {}) {
  const h = createHarness({ now: opts.now ?? WORLD_NOW });
  const vendor = generateSigningKey();
  if (opts.pin !== false)
    h.store.tx(() =>
      pinAtInit(h.store, [verifyKeyFromPaserk(vendor.publicPaserk)], 'test', h.clock.now()),
    );
  const bundles = join(h.dir, 'bundles');
  mkdirSync(bundles, { recursive: true });
  const hashes = new Map<number, string>();
  let counter = 0;

  function params(seq: number, o: SignOpts) {
    const iatMs = o.iatMs ?? h.clock.now() - 60_000 + seq * 1000;
    const prev =
      o.prev !== undefined ? o.prev : seq === 1 ? null : (hashes.get(seq - 1) ?? 'f'.repeat(64));
    return {
      serverId: o.serverId ?? h.info.server_id,
      seq,
      prev,
      iatMs,
      expMs: o.expMs ?? iatMs + 30 * 86_400_000,
      ack: o.ack ?? null,
    };
  }

  /** Signs a bundle from content, as `vendor sign` would; remembers its hash for the next seq's prev. */
  function sign(seq: number, content: Content, o: SignOpts = {}): string {
    const file = join(bundles, o.name ?? `b${seq}-${++counter}.bpsync`);
    const r = writeImportBundle(o.key ?? vendor, params(seq, o), contentRecords(content), file);
    if (!o.key && !o.serverId) hashes.set(seq, r.manifest_sha256);
    return file;
  }

  /**
   * Writes a bundle from raw payload bytes with a signed manifest whose payload fields may lie
   * (len, sha256, records), to test what the signature alone cannot catch.
   */
  function signRaw(
    seq: number,
    payload: Buffer,
    over: Partial<Manifest['payload']> & SignOpts = {},
  ): string {
    const p = params(seq, over);
    const m: Manifest = {
      typ: IMPORT_TYP,
      iss: 'bp-vendor',
      aud: p.serverId,
      server_id: p.serverId,
      seq,
      prev: p.prev,
      iat: p.iatMs,
      exp: p.expMs,
      payload: {
        len: over.len ?? payload.length,
        sha256: over.sha256 ?? sha256Hex(payload),
        records:
          over.records ??
          payload
            .toString('utf8')
            .split('\n')
            .filter((l) => l !== '').length,
      },
      ack: p.ack,
    };
    const token = signManifest(over.key ?? vendor, m, 'import');
    const file = join(bundles, over.name ?? `raw${seq}-${++counter}.bpsync`);
    writeFileSync(file, Buffer.concat([Buffer.from(`${MAGIC}${token}\n`), payload]));
    return file;
  }

  function importFile(file: string, o: Partial<ImportOptions> = {}): Promise<ImportResult> {
    return h.services.sync.importFile(file, { actor: 'test', ...o });
  }

  /** Bundle entitlements as the state a snapshot defines: id → what matters. */
  function bundleState(): Record<string, unknown> {
    const rows = h.store.db
      .prepare(
        "SELECT id, tenant_id, product_id, policy_json, starts_at, ends_at, status, rev FROM entitlements WHERE source = 'bundle' ORDER BY id",
      )
      .all() as Array<Record<string, unknown>>;
    return Object.fromEntries(rows.map((r) => [r.id, r]));
  }

  /**
   * Expects a refusal with this rule, and that it changed nothing but one appended audit row
   * (`sync.import_rejected`, naming the rule).
   */
  async function expectRefused(
    file: string,
    rule: string | string[],
    message?: RegExp,
  ): Promise<AppError> {
    const before = h.snapshot();
    const err = await importFile(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'the bundle was accepted').toBeInstanceOf(AppError);
    const e = err as AppError;
    expect(e.code).toBe('bundle_rejected');
    expect(e.status).toBe(422);
    if (Array.isArray(rule)) expect(rule).toContain(e.details.rule);
    else expect(e.details.rule, e.message).toBe(rule);
    if (message) expect(e.message).toMatch(message);
    const after = h.snapshot();
    const auditBefore = before.audit_log as Array<Record<string, unknown>>;
    const auditAfter = after.audit_log as Array<Record<string, unknown>>;
    expect(auditAfter.slice(0, -1)).toEqual(auditBefore);
    expect(auditAfter.length).toBe(auditBefore.length + 1);
    const row = auditAfter.at(-1)!;
    expect(row.action).toBe('sync.import_rejected');
    expect(JSON.parse(row.details as string).rule).toBe(e.details.rule);
    expect({ ...after, audit_log: null }).toEqual({ ...before, audit_log: null });
    return e;
  }

  return { h, vendor, bundles, sign, signRaw, importFile, bundleState, expectRefused, hashes };
}

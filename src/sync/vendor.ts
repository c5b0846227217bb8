/**
 * The vendor's side of BPSYNC/1 (what the cloud does), so the whole loop runs and is tested on
 * one machine: make a vendor key, sign import bundles, verify a server's exports.
 */
import { counted } from '../plural.ts';
import { withFile } from '../file-errors.ts';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { AppError } from '../errors.ts';
import { auditHash } from '../domain/audit.ts';
import { formatPath } from '../schemas.ts';
import {
  generateSigningKey,
  signingKeyFromPaserk,
  verifyKeyFromPaserk,
  type SigningKey,
} from '../tokens/keys.ts';
import { TokenError } from '../tokens/errors.ts';
import { StrictJsonError, parseStrictJson } from '../tokens/strict-json.ts';
import { parseRfc3339, formatRfc3339 } from '../tokens/claims.ts';
import {
  LineReader,
  PayloadWriter,
  assembleBundle,
  hashFileRegion,
  manifestHash,
  readHeader,
  rejected,
} from './format.ts';
import {
  EXPORT_TYP,
  IMPORT_TYP,
  parseManifest,
  peekClaims,
  signManifest,
  verifyManifest,
  type Manifest,
} from './manifest.ts';
import {
  EXPORT_OPS,
  auditHeadRecordSchema,
  auditRecordSchema,
  enrolmentRecordSchema,
  parseLine,
  quotaUsageRecordSchema,
  parseSetting,
  signInputSchema,
} from './records.ts';
import { parseVendorKeys } from './trust.ts';
import { makeDirs } from '../fs-dirs.ts';

export const DEFAULT_VENDOR_ISS = 'bp-vendor';

/** Days a signed bundle stays valid when vendor sign is given no --exp-days. */
export const DEFAULT_BUNDLE_EXP_DAYS = 30;

/** `vendor keygen`: D/vendor.secret (k4.secret, 0600) and D/vendor.public (k4.public). Never overwrites. */
export function vendorKeygen(outDir: string): {
  public_key: string;
  kid: string;
  secret_key_file: string;
  public_key_file: string;
} {
  const dir = resolve(outDir);
  makeDirs(dir, 0o700);
  const secretFile = join(dir, 'vendor.secret');
  const publicFile = join(dir, 'vendor.public');
  for (const f of [secretFile, publicFile]) {
    if (existsSync(f))
      throw new AppError(
        'conflict',
        `${f} exists already; refusing to overwrite a vendor key`,
        {},
        'choose another --out folder',
      );
  }
  const key = generateSigningKey();
  writeFileSync(secretFile, `${key.secretPaserk()}\n`, { mode: 0o600, flag: 'wx' });
  writeFileSync(publicFile, `${key.publicPaserk}\n`, { mode: 0o644, flag: 'wx' });
  return {
    public_key: key.publicPaserk,
    kid: key.kid,
    secret_key_file: secretFile,
    public_key_file: publicFile,
  };
}

/** Reads a k4.secret file (as written by vendor keygen). */
export function loadVendorKey(file: string): SigningKey {
  const text = withFile({ action: 'read', what: 'the vendor key', file }, () =>
    readFileSync(file, 'utf8'),
  ).trim();
  try {
    return signingKeyFromPaserk(text);
  } catch (err) {
    if (err instanceof TokenError)
      throw new AppError(
        'invalid_request',
        `${file} does not hold a k4.secret key: ${err.message}`,
      );
    throw err;
  }
}

/** The manifest fields a signer chooses; the payload part is computed. */
export interface SignParams {
  serverId: string;
  seq: number;
  /** sha256 hex of the previous bundle's manifest; null for seq 1. */
  prev: string | null;
  iatMs: number;
  expMs: number;
  ack: number | null;
  iss?: string;
}

/**
 * Writes a signed import bundle from records (entitlement, revoke, setting objects, in order) to
 * `out`, atomically (temp file, fsync, rename). Generic on purpose: tests build large bundles with it.
 */
export function writeImportBundle(
  key: SigningKey,
  p: SignParams,
  records: Iterable<Record<string, unknown>>,
  out: string,
): { file: string; seq: number; manifest_sha256: string; records: number; bytes: number } {
  const file = resolve(out);
  makeDirs(dirname(file));
  const tag = randomBytes(4).toString('hex');
  const payloadFile = `${file}.${tag}.payload`;
  const part = `${file}.${tag}.part`;
  try {
    const fd = openSync(payloadFile, 'wx', 0o600);
    let payload: Manifest['payload'];
    try {
      const w = new PayloadWriter(fd);
      for (const r of records) w.write(r);
      payload = w.finish();
    } finally {
      closeSync(fd);
    }
    const manifest: Manifest = {
      typ: IMPORT_TYP,
      iss: p.iss ?? DEFAULT_VENDOR_ISS,
      aud: p.serverId,
      server_id: p.serverId,
      seq: p.seq,
      prev: p.prev,
      iat: p.iatMs,
      exp: p.expMs,
      payload,
      ack: p.ack,
    };
    const token = signManifest(key, manifest, 'import');
    const outFd = openSync(part, 'wx', 0o644);
    try {
      assembleBundle(outFd, token, payloadFile);
    } finally {
      closeSync(outFd);
    }
    renameSync(part, file);
    return {
      file,
      seq: p.seq,
      manifest_sha256: manifestHash(token),
      records: payload.records,
      bytes: Buffer.byteLength(`BPSYNC/1\n${token}\n`) + payload.len,
    };
  } finally {
    rmSync(payloadFile, { force: true });
    rmSync(part, { force: true });
  }
}

/** The manifest hash of a bundle file (what the next bundle's `prev` must be). */
export function bundleManifestHash(file: string): string {
  const fd = openSync(file, 'r');
  try {
    return manifestHash(readHeader(fd).manifest);
  } finally {
    closeSync(fd);
  }
}

export interface SignOptions {
  keyFile: string;
  serverId: string;
  seq: number;
  inFile: string;
  out: string;
  /** The previous bundle file, or its manifest hash (64 hex). Required when seq > 1. */
  prev?: string | undefined;
  expDays?: number | undefined;
  iat?: string | undefined;
  ack?: number | undefined;
  iss?: string | undefined;
  now: number;
}

/** `vendor sign`: content.json → a signed BPSYNC/1 import bundle. */
export function vendorSign(o: SignOptions): {
  file: string;
  seq: number;
  manifest_sha256: string;
  records: number;
  bytes: number;
  iat: string;
  exp: string;
} {
  const key = loadVendorKey(o.keyFile);
  let raw: unknown;
  try {
    raw = parseStrictJson(
      withFile({ action: 'read', what: 'the bundle content (--in)', file: o.inFile }, () =>
        readFileSync(o.inFile, 'utf8'),
      ),
    );
  } catch (err) {
    if (err instanceof StrictJsonError)
      throw new AppError('invalid_request', `${o.inFile} is not valid JSON: ${err.where}`);
    throw err;
  }
  const parsed = signInputSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 50)
      .map((i) => ({ path: formatPath(i.path), message: i.message }));
    throw new AppError(
      'invalid_request',
      `invalid bundle content: ${issues[0]!.path}: ${issues[0]!.message}`,
      { issues },
    );
  }
  const content = raw as {
    entitlements: Array<Record<string, unknown>>;
    revoked?: string[];
    settings?: Record<string, unknown>;
  };
  const settings = Object.entries(content.settings ?? {});
  try {
    for (const [k, v] of settings) {
      parseSetting(k, v, 'settings');
      if (k === 'vendor_keys')
        parseVendorKeys(v as string[], (m) => rejected('malformed', `settings.vendor_keys: ${m}`));
    }
  } catch (err) {
    if (err instanceof AppError)
      throw new AppError(
        'invalid_request',
        err.message.replace(/^settings: /, 'invalid bundle content: settings: '),
      );
    throw err;
  }
  const ids = new Set<string>();
  for (const e of content.entitlements) {
    const id = e.entitlement_id as string;
    if (ids.has(id))
      throw new AppError(
        'invalid_request',
        `invalid bundle content: entitlement ${id} is listed twice`,
      );
    ids.add(id);
  }

  let prev: string | null = null;
  if (o.prev !== undefined)
    prev = /^[0-9a-f]{64}$/.test(o.prev) ? o.prev : bundleManifestHash(o.prev);
  if (o.seq === 1 && prev !== null)
    throw new AppError('invalid_request', 'seq 1 is the first bundle: it has no --prev');
  if (o.seq > 1 && prev === null)
    throw new AppError(
      'invalid_request',
      `seq ${o.seq} needs --prev: the previous bundle file (or its manifest sha256)`,
      { usage: true },
    );
  let iatMs = o.now;
  if (o.iat !== undefined) {
    const t = parseRfc3339(o.iat);
    if (t === undefined)
      throw new AppError(
        'invalid_request',
        `--iat must be an RFC 3339 time such as 2024-01-15T11:30:00Z, got ${JSON.stringify(o.iat)}`,
      );
    iatMs = t;
  }
  // Whole seconds, as the token carries them: what is signed is what the server reads back.
  iatMs = Math.floor(iatMs / 1000) * 1000;
  const expMs = iatMs + (o.expDays ?? DEFAULT_BUNDLE_EXP_DAYS) * 86_400_000;

  function* records(): Generator<Record<string, unknown>> {
    for (const e of content.entitlements) yield { op: 'entitlement', ...e };
    for (const id of content.revoked ?? []) yield { op: 'revoke', entitlement_id: id };
    for (const [k, v] of settings) yield { op: 'setting', key: k, value: v };
  }
  const r = writeImportBundle(
    key,
    { serverId: o.serverId, seq: o.seq, prev, iatMs, expMs, ack: o.ack ?? null, iss: o.iss },
    records(),
    o.out,
  );
  return { ...r, iat: formatRfc3339(iatMs), exp: formatRfc3339(expMs) };
}

export interface ExportSummary {
  ok: true;
  file: string;
  server_id: string;
  seq: number;
  prev: string | null;
  manifest_sha256: string;
  iat: string;
  ack: number | null;
  records: number;
  ops: Record<string, number>;
  enrolment: boolean;
  audit: {
    rows: number;
    first_seq: number | null;
    last_seq: number | null;
    head_seq: number;
    head_hash: string;
  };
  usage: {
    entitlements: number;
    grants: number;
    denials: number;
    peak_concurrent_max: number;
    /** Grants past max_seats in the export: the true-up to bill. */
    overdraft_grants: number;
  };
}

/**
 * `vendor verify-export`: the signature (server key, export assertion for the manifest's server),
 * payload length and hash, every record, and the audit chain within the export (and across to the
 * previous export when given).
 *
 * @throws AppError bundle_rejected naming the rule; invalid_request for a bad --server-key
 */
export async function verifyExport(
  file: string,
  serverKey: string,
  opts: { prev?: string | undefined } = {},
): Promise<ExportSummary> {
  let key;
  try {
    key = verifyKeyFromPaserk(serverKey.trim());
  } catch (err) {
    if (err instanceof TokenError)
      throw new AppError(
        'invalid_request',
        `--server-key is not a usable k4.public key: ${err.message}`,
      );
    throw err;
  }
  let prevHead: { seq: number; hash: string; manifest: string } | undefined;
  if (opts.prev !== undefined) {
    const p = await verifyExport(opts.prev, serverKey);
    prevHead = { seq: p.audit.head_seq, hash: p.audit.head_hash, manifest: p.manifest_sha256 };
  }
  const fd = openSync(file, 'r');
  try {
    const header = readHeader(fd);
    const peek = peekClaims(header.manifest);
    const serverId = typeof peek?.server_id === 'string' ? peek.server_id : '';
    const { claims } = verifyManifest([key], header.manifest, 'export', serverId);
    if (claims.typ !== EXPORT_TYP)
      throw rejected(
        'malformed',
        `the manifest typ is ${JSON.stringify(claims.typ)?.slice(0, 40)}, not "${EXPORT_TYP}"`,
      );
    const m = parseManifest(claims);
    if (m.iss !== m.server_id)
      throw rejected(
        'malformed',
        `the export's iss (${m.iss}) is not its server_id (${m.server_id})`,
      );
    const hash = manifestHash(header.manifest);
    if (prevHead && m.prev !== prevHead.manifest) {
      throw rejected(
        'fork',
        `export seq ${m.seq} does not follow the previous export given: its prev is not that export's manifest hash`,
      );
    }
    const have = header.fileSize - header.payloadOffset;
    if (have !== m.payload.len)
      throw rejected(
        'malformed',
        `the payload is ${have} bytes, the manifest says ${m.payload.len}`,
      );
    const h = await hashFileRegion(file, header.payloadOffset);
    if (h.sha256 !== m.payload.sha256 || h.bytes !== m.payload.len)
      throw rejected(
        'malformed',
        'the payload does not match the sha256 in the manifest (the file was altered)',
      );

    const ops: Record<string, number> = {};
    let enrolment = false;
    let lastAudit: { seq: number; hash: string } | undefined;
    let firstAuditSeq: number | null = null;
    let auditRows = 0;
    let head: { seq: number; hash: string } | undefined;
    const usage = {
      entitlements: 0,
      grants: 0,
      denials: 0,
      peak_concurrent_max: 0,
      overdraft_grants: 0,
    };
    const reader = new LineReader(fd, header.payloadOffset, header.fileSize);
    let n = 0;
    for (let line = reader.next(); line !== null; line = reader.next()) {
      n++;
      const rec = parseLine(line, n);
      const op = rec.op;
      if (typeof op !== 'string' || !(EXPORT_OPS as readonly string[]).includes(op))
        throw rejected('malformed', `record ${n}: unknown op ${JSON.stringify(op)?.slice(0, 40)}`);
      ops[op] = (ops[op] ?? 0) + 1;
      const check = <S extends z.ZodType>(schema: S): z.output<S> => {
        const r = schema.safeParse(rec);
        if (!r.success)
          throw rejected(
            'malformed',
            `record ${n} (${op}): ${formatPath(r.error.issues[0]!.path)}: ${r.error.issues[0]!.message}`,
          );
        return r.data;
      };
      if (head !== undefined && op === 'audit')
        throw rejected('malformed', `record ${n}: an audit row after the audit_head`);
      if (op === 'enrolment') {
        const e = check(enrolmentRecordSchema);
        if (e.server_id !== m.server_id || e.public_key !== key.publicPaserk)
          throw rejected(
            'malformed',
            `record ${n}: the enrolment names another server or key than the one that signed the export`,
          );
        enrolment = true;
      } else if (op === 'audit') {
        const a = check(auditRecordSchema);
        const expectPrev =
          lastAudit?.hash ?? (prevHead && prevHead.seq === a.seq - 1 ? prevHead.hash : undefined);
        if (lastAudit && a.seq !== lastAudit.seq + 1)
          throw rejected(
            'malformed',
            `audit row ${a.seq} follows row ${lastAudit.seq}: rows are missing`,
            { audit_seq: a.seq },
          );
        if (!lastAudit && prevHead && a.seq !== prevHead.seq + 1)
          throw rejected(
            'malformed',
            `the first audit row is ${a.seq}, but the previous export ended at row ${prevHead.seq}: rows are missing`,
            { audit_seq: a.seq },
          );
        if (expectPrev !== undefined && a.prev_hash !== expectPrev)
          throw rejected('malformed', `audit row ${a.seq} does not chain to the row before it`, {
            audit_seq: a.seq,
          });
        if (auditHash(a.prev_hash, a) !== a.hash)
          throw rejected(
            'malformed',
            `audit row ${a.seq} does not match its hash (the row was edited)`,
            { audit_seq: a.seq },
          );
        firstAuditSeq ??= a.seq;
        lastAudit = { seq: a.seq, hash: a.hash };
        auditRows++;
      } else if (op === 'audit_head') {
        if (head !== undefined) throw rejected('malformed', `record ${n}: a second audit_head`);
        head = check(auditHeadRecordSchema);
        if (lastAudit && (head.seq !== lastAudit.seq || head.hash !== lastAudit.hash))
          throw rejected(
            'malformed',
            `the audit_head (row ${head.seq}) is not the last audit row of the export (row ${lastAudit.seq})`,
          );
        if (!lastAudit && prevHead && (head.seq !== prevHead.seq || head.hash !== prevHead.hash))
          throw rejected(
            'malformed',
            "the export carries no audit rows, but its audit_head differs from the previous export's",
          );
      } else if (op === 'quota_usage') {
        check(quotaUsageRecordSchema);
      } else if (op === 'usage') {
        usage.entitlements++;
        usage.grants += Number(rec.grants) || 0;
        usage.denials += Number(rec.denials) || 0;
        usage.overdraft_grants += Number(rec.overdraft_grants) || 0;
        usage.peak_concurrent_max = Math.max(
          usage.peak_concurrent_max,
          Number(rec.peak_concurrent) || 0,
        );
      }
    }
    if (n !== m.payload.records)
      throw rejected(
        'malformed',
        `the payload holds ${counted(n, 'record')}, the manifest says ${m.payload.records}`,
      );
    if (head === undefined) throw rejected('malformed', 'the export carries no audit_head');
    if (m.seq === 1 && !enrolment)
      throw rejected('malformed', 'the first export (seq 1) carries no enrolment record');
    return {
      ok: true,
      file: resolve(file),
      server_id: m.server_id,
      seq: m.seq,
      prev: m.prev,
      manifest_sha256: hash,
      iat: formatRfc3339(m.iat),
      ack: m.ack,
      records: n,
      ops,
      enrolment,
      audit: {
        rows: auditRows,
        first_seq: firstAuditSeq,
        last_seq: lastAudit?.seq ?? null,
        head_seq: head.seq,
        head_hash: head.hash,
      },
      usage,
    };
  } finally {
    closeSync(fd);
  }
}

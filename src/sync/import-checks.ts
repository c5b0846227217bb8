/**
 * The checks of an import before any record is read (sync-bundles/README.md section 4, checks 2-12,
 * in that order): the header and manifest (magic, strict PASETO, a pinned key, the signature, typ,
 * claims, this server), the order against the last import (replay, fork, rollback, or this very
 * bundle again), the time (clock_unsynced, expired), and the payload's length and sha256 in one
 * streaming pass. Each refusal throws bundle_rejected with its `details.rule`. The record checks
 * (check 13) are the preparing pass's (import-plan.ts).
 */
import { toIso } from '../clock.ts';
import type { VerifyKey } from '../tokens/keys.ts';
import { hashFileRegion, manifestHash, readHeader, rejected, ruleOf } from './format.ts';
import { IMPORT_TYP, parseManifest, verifyManifest, type Manifest } from './manifest.ts';
import { pinnedVendorKeys } from './trust.ts';
import type { ImportResult } from './import.ts';
import type { SyncDeps } from './service.ts';

/** How far a bundle's `iat` may be ahead of our clock before the clock is called unsynced. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** A bundle whose header passed checks 2-8: its manifest, hash, key id, where its payload lies. */
export interface Verified {
  manifest: Manifest;
  /** The manifest hash (sha256 hex): the bundle's identity in the ledger and in `prev`. */
  hash: string;
  /** The pinned vendor key that signed it. */
  kid: string;
  /** Byte offset of the payload's first line, and the file's size, in bytes. */
  payloadOffset: number;
  fileSize: number;
}

/**
 * Checks 2-8: magic, strict PASETO, a pinned key, the signature, typ, claims, server. Throws
 * bundle_rejected (malformed, too_large, unknown_key, bad_signature, wrong_server).
 */
export function verifyHeader(deps: SyncDeps, fd: number): Verified {
  const header = readHeader(fd);
  const keys: VerifyKey[] = pinnedVendorKeys(deps.store);
  let verified;
  try {
    verified = verifyManifest(keys, header.manifest, 'import', deps.info.server_id);
  } catch (err) {
    // The token's form is checked before its key, even when there is no key to find.
    if (keys.length === 0 && ruleOf(err) === 'unknown_key') {
      throw rejected(
        'unknown_key',
        'no vendor key is pinned on this server, so no bundle can be trusted',
        {},
        'pin the vendor key: bp-license-server init --vendor-key k4.public.…',
      );
    }
    throw err;
  }
  const { claims, kid } = verified;
  if (claims.typ !== IMPORT_TYP) {
    throw rejected(
      'malformed',
      `the manifest typ is ${JSON.stringify(claims.typ)?.slice(0, 40)}, not "${IMPORT_TYP}"`,
    );
  }
  const manifest = parseManifest(claims);
  if (manifest.server_id !== deps.info.server_id || manifest.aud !== deps.info.server_id) {
    throw rejected(
      'wrong_server',
      `the bundle is meant for server ${manifest.server_id}, not this one (${deps.info.server_id})`,
      { bundle_server_id: manifest.server_id, server_id: deps.info.server_id },
    );
  }
  return {
    manifest,
    hash: manifestHash(header.manifest),
    kid,
    payloadOffset: header.payloadOffset,
    fileSize: header.fileSize,
  };
}

/**
 * Check 9, seq against the last import: higher is new; equal with the same manifest is this bundle
 * again (`same`). Throws bundle_rejected with rule replay, fork or rollback.
 */
export function orderOf(deps: SyncDeps, v: Verified): 'new' | 'same' {
  const last = deps.store.sync.lastImport();
  const m = v.manifest;
  if (!last) return 'new';
  const details = { seq: m.seq, last_seq: last.seq };
  if (m.seq < last.seq)
    throw rejected(
      'replay',
      `bundle seq ${m.seq} is older than the last imported bundle (seq ${last.seq}); importing it would undo newer changes`,
      details,
    );
  if (m.seq === last.seq) {
    if (v.hash === last.manifest_sha256) return 'same';
    throw rejected(
      'fork',
      `a different bundle with seq ${m.seq} was imported already (manifest ${last.manifest_sha256.slice(0, 16)}…); two bundles may never share a seq`,
      details,
    );
  }
  if (m.seq === last.seq + 1 && m.prev !== last.manifest_sha256) {
    throw rejected(
      'fork',
      `bundle seq ${m.seq} does not follow the bundle imported as seq ${last.seq}: its prev is not that bundle's manifest hash`,
      { ...details, prev: m.prev, expected_prev: last.manifest_sha256 },
    );
  }
  if (m.iat < last.iat) {
    throw rejected(
      'rollback',
      `bundle seq ${m.seq} was signed at ${toIso(m.iat)}, before the last imported bundle (seq ${last.seq}, signed ${toIso(last.iat)}): an old snapshot signed again`,
      details,
    );
  }
  return 'new';
}

/**
 * Checks 10 and 11 against the import's `now` (ms): `iat` at most CLOCK_SKEW_MS ahead
 * (clock_unsynced), `exp` still ahead (expired).
 */
export function checkTime(m: Manifest, now: number): void {
  if (m.iat > now + CLOCK_SKEW_MS) {
    throw rejected(
      'clock_unsynced',
      `the bundle was signed at ${toIso(m.iat)}, more than 5 minutes ahead of this server's clock (${toIso(now)})`,
      { iat: toIso(m.iat), now: toIso(now) },
      "set this server's clock right (it is behind the vendor's), then import again",
    );
  }
  if (m.exp <= now) {
    throw rejected(
      'expired',
      `the bundle expired at ${toIso(m.exp)} (now ${toIso(now)})`,
      { exp: toIso(m.exp), now: toIso(now) },
      'ask the vendor for a fresh bundle',
    );
  }
}

/**
 * Check 12, the first, streaming pass: the payload has exactly the length and hash the manifest
 * signs. Throws bundle_rejected (malformed).
 */
export async function checkPayload(file: string, v: Verified): Promise<void> {
  const want = v.manifest.payload;
  const have = v.fileSize - v.payloadOffset;
  if (have !== want.len) {
    throw rejected(
      'malformed',
      `the payload is ${have} bytes, the manifest says ${want.len} (the file is truncated, extended or altered)`,
      { payload_bytes: have, manifest_len: want.len },
    );
  }
  const h = await hashFileRegion(file, v.payloadOffset);
  if (h.bytes !== want.len) throw rejected('malformed', 'the file changed while it was read');
  if (h.sha256 !== want.sha256)
    throw rejected(
      'malformed',
      'the payload does not match the sha256 in the manifest (the file was altered)',
    );
}

/** The answer when this very bundle was the last one imported: a no-op, nothing counted. */
export function unchangedResult(v: Verified): ImportResult {
  return {
    status: 'unchanged',
    seq: v.manifest.seq,
    manifest_sha256: v.hash,
    added: 0,
    changed: 0,
    revoked: 0,
    unchanged: 0,
    suspended: 0,
    ignored: 0,
    settings: [],
    seats_cut: [],
  };
}

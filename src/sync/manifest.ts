/**
 * The manifest of a BPSYNC/1 bundle: a PASETO v4.public token whose claims describe the payload,
 * bound to one server and one direction by its implicit assertion.
 */
import { z } from 'zod';
import { decodeBase64Url } from '../tokens/base64url.ts';
import { formatRfc3339, parseRfc3339, signClaims, verifyClaims } from '../tokens/claims.ts';
import { TokenError } from '../tokens/errors.ts';
import type { SigningKey, VerifyKey } from '../tokens/keys.ts';
import { parseStrictJson } from '../tokens/strict-json.ts';
import { formatPath, identifier } from '../schemas.ts';
import { LIMITS, rejected } from './format.ts';

export const IMPORT_TYP = 'bp.sync.import/1';
export const EXPORT_TYP = 'bp.sync.export/1';
export type Direction = 'import' | 'export';

const TYP: Record<Direction, string> = { import: IMPORT_TYP, export: EXPORT_TYP };

/** The implicit assertion: `bp.sync.import/1\n<server_id>` or `bp.sync.export/1\n<server_id>`. */
export function implicitAssertion(direction: Direction, serverId: string): string {
  return `${TYP[direction]}\n${serverId}`;
}

export interface Manifest {
  typ: string;
  iss: string;
  aud: string;
  server_id: string;
  seq: number;
  prev: string | null;
  /** Epoch milliseconds. */
  iat: number;
  exp: number;
  payload: { len: number; sha256: string; records: number };
  ack: number | null;
}

const sha256Hex = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'must be a sha256 digest in lowercase hex (64 characters)');
const time = z
  .string()
  .max(64)
  .transform((s, ctx) => {
    const ms = parseRfc3339(s);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be an RFC 3339 time such as 2024-01-15T11:30:00Z',
      });
      return z.NEVER;
    }
    return ms;
  });
const seqNumber = z.int().min(1).max(Number.MAX_SAFE_INTEGER);

const manifestSchema = z
  .strictObject({
    typ: z.enum([IMPORT_TYP, EXPORT_TYP]),
    iss: identifier,
    aud: identifier,
    server_id: identifier,
    seq: seqNumber,
    prev: sha256Hex.nullable().optional(),
    iat: time,
    exp: time,
    payload: z.strictObject({
      len: z.int().min(0).max(LIMITS.fileBytes),
      sha256: sha256Hex,
      records: z.int().min(0).max(LIMITS.records),
    }),
    ack: z.int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  })
  .superRefine((m, ctx) => {
    if (m.exp <= m.iat)
      ctx.addIssue({ code: 'custom', path: ['exp'], message: 'must be after iat' });
    if (m.seq === 1 && m.prev != null)
      ctx.addIssue({
        code: 'custom',
        path: ['prev'],
        message: 'the first bundle (seq 1) has no previous one: prev must be null or absent',
      });
    if (m.seq > 1 && m.prev == null)
      ctx.addIssue({
        code: 'custom',
        path: ['prev'],
        message: `seq ${m.seq} needs prev, the sha256 of the previous bundle's manifest`,
      });
  });

/** Checks claims already verified by signature; throws bundle_rejected `malformed` naming the field. */
export function parseManifest(claims: Record<string, unknown>): Manifest {
  const r = manifestSchema.safeParse(claims);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw rejected('malformed', `manifest claim ${formatPath(i.path)}: ${i.message}`, {
      issues: r.error.issues
        .slice(0, 20)
        .map((x) => ({ path: formatPath(x.path), message: x.message })),
    });
  }
  const m = r.data;
  return { ...m, prev: m.prev ?? null, ack: m.ack ?? null };
}

/** The claims as signed: times as RFC 3339 strings, like lease tokens. */
export function manifestClaims(m: Manifest): Record<string, unknown> {
  return {
    typ: m.typ,
    iss: m.iss,
    aud: m.aud,
    server_id: m.server_id,
    seq: m.seq,
    prev: m.prev,
    iat: formatRfc3339(m.iat),
    exp: formatRfc3339(m.exp),
    payload: { len: m.payload.len, sha256: m.payload.sha256, records: m.payload.records },
    ack: m.ack,
  };
}

/** Signs a manifest for a direction and server (the implicit assertion binds both). */
export function signManifest(key: SigningKey, m: Manifest, direction: Direction): string {
  return signClaims(key, manifestClaims(m), {
    implicit: implicitAssertion(direction, m.server_id),
  });
}

/** Reads a token's claims WITHOUT verifying them: only to explain a failed verification. */
export function peekClaims(token: string): Record<string, unknown> | undefined {
  try {
    const body = token.split('.')[2];
    if (body === undefined) return undefined;
    const bytes = decodeBase64Url(body);
    const value = parseStrictJson(
      bytes.subarray(0, Math.max(0, bytes.length - 64)).toString('utf8'),
    );
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies a manifest token: strict PASETO, a key from `keys` named by the footer kid, the
 * signature over the implicit assertion for `direction` and `serverId`. When the signature fails,
 * it checks whether the token is a genuine one for another server or the other direction, to say
 * so (`wrong_server`, `malformed`) instead of a bare `bad_signature`.
 *
 * @throws AppError bundle_rejected (`malformed`, `unknown_key`, `bad_signature`, `wrong_server`)
 */
export function verifyManifest(
  keys: readonly VerifyKey[],
  token: string,
  direction: Direction,
  serverId: string,
): { claims: Record<string, unknown>; kid: string } {
  try {
    const v = verifyClaims(keys, token, { implicit: implicitAssertion(direction, serverId) });
    return { claims: v.claims, kid: v.key.kid };
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    switch (err.code) {
      case 'unknown_key':
        throw rejected(
          'unknown_key',
          direction === 'import'
            ? 'the bundle is signed by a vendor key this server has not pinned'
            : 'the export is signed by another key than the server key given',
          {},
          direction === 'import'
            ? 'pin the vendor key with init --vendor-key, or ask the vendor for a bundle signed with a pinned key'
            : undefined,
        );
      case 'bad_signature':
        throw explainBadSignature(keys, token, direction, serverId);
      default:
        throw rejected(
          'malformed',
          `the manifest is not a valid PASETO v4.public token: ${err.message}`,
          { token_error: err.code },
        );
    }
  }
}

function explainBadSignature(
  keys: readonly VerifyKey[],
  token: string,
  direction: Direction,
  serverId: string,
) {
  const peek = peekClaims(token);
  const verifies = (dir: Direction, sid: string) => {
    try {
      verifyClaims(keys, token, { implicit: implicitAssertion(dir, sid) });
      return true;
    } catch {
      return false;
    }
  };
  const claimedServer = typeof peek?.server_id === 'string' ? peek.server_id : undefined;
  if (
    claimedServer !== undefined &&
    claimedServer !== serverId &&
    claimedServer.length <= 200 &&
    verifies(direction, claimedServer)
  ) {
    return rejected(
      'wrong_server',
      `the bundle was signed for server ${claimedServer}, not this one (${serverId})`,
      { bundle_server_id: claimedServer, server_id: serverId },
    );
  }
  const other: Direction = direction === 'import' ? 'export' : 'import';
  if (verifies(other, claimedServer ?? serverId)) {
    return rejected(
      'malformed',
      `this is ${other === 'export' ? 'an export bundle (server to vendor)' : 'an import bundle (vendor to server)'}, not ${direction === 'import' ? 'an import' : 'an export'}`,
    );
  }
  return rejected(
    'bad_signature',
    'the manifest signature does not verify: the bundle was altered or not signed by the key its footer names',
  );
}

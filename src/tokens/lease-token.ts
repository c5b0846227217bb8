import { formatRfc3339, parseRfc3339, signClaims, signClaimsAsync } from './claims.ts';
import { TokenError, preview } from './errors.ts';
import type { SigningKey } from './keys.ts';

/** The `typ` claim of a lease token; the `/1` is bumped on any incompatible change. */
export const LEASE_TOKEN_TYPE = 'bp.lease/1';

/** What the server knows when it issues a lease token. */
export interface LeaseClaimsInput {
  /** Server id, becomes `iss`. */
  serverId: string;
  /** e.g. "user"; must not contain ":" because `sub` is `subjectType:subjectId`. */
  subjectType: string;
  subjectId: string;
  /** Product id, becomes `aud`. */
  productId: string;
  /** Lease id, becomes `jti`. */
  leaseId: string;
  tenantId: string;
  entitlementId: string;
  /** Policy type, becomes `policy`. */
  policyType: string;
  features: readonly string[];
  issuedAtMs: number;
  expiresAtMs: number;
  /** True only while the entitlement is in its grace period. */
  grace: boolean;
  /** Granted past max_seats (within overdraft_seats): claim `overdraft`, present only when true. */
  overdraft?: boolean | undefined;
  /** Borrowed for offline use: claim `borrowed`, present only when true. */
  borrowed?: boolean | undefined;
}

/** The JSON claims of a lease token, exactly as signed. */
export type LeaseTokenClaims = {
  typ: typeof LEASE_TOKEN_TYPE;
  iss: string;
  sub: string;
  aud: string;
  jti: string;
  tenant_id: string;
  entitlement_id: string;
  policy: string;
  features: string[];
  iat: string;
  nbf: string;
  exp: string;
  /** Present (and true) only inside grace; absent otherwise. */
  grace?: true;
  /** Present (and true) only on a lease granted past max_seats. */
  overdraft?: true;
  /** Present (and true) only on a borrowed lease (exp is the end of the borrow). */
  borrowed?: true;
};

/** Lease claims as the client SDK hands them to applications: typed, with Date times. */
export interface LeaseClaims {
  typ: typeof LEASE_TOKEN_TYPE;
  iss: string;
  sub: string;
  subjectType: string;
  subjectId: string;
  aud: string;
  jti: string;
  tenantId: string;
  entitlementId: string;
  policy: string;
  features: string[];
  iat: Date;
  nbf: Date;
  exp: Date;
  grace: boolean;
  overdraft: boolean;
  borrowed: boolean;
}

function requireText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new TokenError(
      'bad_claims',
      `lease ${field} must be a non-empty string, got ${typeof value === 'string' ? 'an empty string' : typeof value}`,
    );
  }
  return value;
}

/**
 * Builds the claims of a lease token. Times are truncated to whole seconds (the token format), so
 * the token never outlives the lease it stands for.
 *
 * @throws TokenError `bad_claims` on an empty id, a ":" in subjectType, non-string features, or
 *   an expiry not at least one second after issue
 */
export function buildLeaseClaims(input: LeaseClaimsInput): LeaseTokenClaims {
  const subjectType = requireText(input.subjectType, 'subjectType');
  if (subjectType.includes(':')) {
    throw new TokenError(
      'bad_claims',
      `lease subjectType ${preview(subjectType)} must not contain ":" (sub is "type:id")`,
    );
  }
  if (
    !Array.isArray(input.features) ||
    !input.features.every((f) => typeof f === 'string' && f.length > 0)
  ) {
    throw new TokenError('bad_claims', 'lease features must be an array of non-empty strings');
  }
  if (typeof input.grace !== 'boolean')
    throw new TokenError('bad_claims', 'lease grace must be a boolean');
  const iat = formatRfc3339(input.issuedAtMs);
  const exp = formatRfc3339(input.expiresAtMs);
  if (Math.floor(input.expiresAtMs / 1000) <= Math.floor(input.issuedAtMs / 1000)) {
    throw new TokenError(
      'bad_claims',
      `lease expiry ${exp} must be at least one second after issue ${iat}`,
    );
  }
  const claims: LeaseTokenClaims = {
    typ: LEASE_TOKEN_TYPE,
    iss: requireText(input.serverId, 'serverId'),
    sub: `${subjectType}:${requireText(input.subjectId, 'subjectId')}`,
    aud: requireText(input.productId, 'productId'),
    jti: requireText(input.leaseId, 'leaseId'),
    tenant_id: requireText(input.tenantId, 'tenantId'),
    entitlement_id: requireText(input.entitlementId, 'entitlementId'),
    policy: requireText(input.policyType, 'policyType'),
    features: [...input.features],
    iat,
    nbf: iat,
    exp,
  };
  if (input.grace) claims.grace = true;
  if (input.overdraft === true) claims.overdraft = true;
  if (input.borrowed === true) claims.borrowed = true;
  return claims;
}

/**
 * Issues a signed lease token: v4.public, footer `{"kid":"k4.pid…"}`, no implicit assertion (so
 * any PASETO v4 library can verify it with the public key alone).
 */
export function issueLeaseToken(key: SigningKey, input: LeaseClaimsInput): string {
  return signClaims(key, buildLeaseClaims(input));
}

/** As {@link issueLeaseToken}, signing on the libuv thread pool. */
export function issueLeaseTokenAsync(key: SigningKey, input: LeaseClaimsInput): Promise<string> {
  try {
    return signClaimsAsync(key, buildLeaseClaims(input));
  } catch (err) {
    return Promise.reject(err);
  }
}

function readString(claims: Record<string, unknown>, name: string): string {
  const value = claims[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new TokenError(
      'bad_claims',
      `lease token claim "${name}" must be a non-empty string, got ${value === undefined ? 'nothing' : typeof value}`,
    );
  }
  return value;
}

/** A flag claim (grace, overdraft, borrowed): true when present, which it is only when true. */
function readFlag(
  claims: Record<string, unknown>,
  name: 'grace' | 'overdraft' | 'borrowed',
): boolean {
  const value = claims[name];
  if (value !== undefined && value !== true) {
    throw new TokenError(
      'bad_claims',
      `lease token claim "${name}" must be true when present (it is omitted otherwise)`,
    );
  }
  return value === true;
}

function readDate(claims: Record<string, unknown>, name: 'iat' | 'nbf' | 'exp'): Date {
  const text = readString(claims, name);
  const ms = parseRfc3339(text);
  if (ms === undefined) {
    throw new TokenError(
      'bad_claims',
      `lease token claim "${name}" is not an RFC 3339 date-time: ${preview(text)}`,
    );
  }
  return new Date(ms);
}

/**
 * Checks that verified claims are a well-formed lease and converts them to {@link LeaseClaims}.
 * Unknown extra claims are ignored so newer servers can add fields without breaking clients.
 * Does not check times, audience or tenant; the caller decides those.
 *
 * @throws TokenError `wrong_type` (typ is not bp.lease/1), `bad_claims`
 */
export function readLeaseClaims(claims: Record<string, unknown>): LeaseClaims {
  if (claims.typ !== LEASE_TOKEN_TYPE) {
    throw new TokenError(
      'wrong_type',
      `token typ is ${typeof claims.typ === 'string' ? preview(claims.typ) : 'missing'}, expected "${LEASE_TOKEN_TYPE}"; this is not a lease token`,
    );
  }
  const sub = readString(claims, 'sub');
  const colon = sub.indexOf(':');
  if (colon <= 0 || colon === sub.length - 1) {
    throw new TokenError(
      'bad_claims',
      `lease token claim "sub" must be "subject_type:subject_id", got ${preview(sub)}`,
    );
  }
  const features = claims.features;
  if (!Array.isArray(features) || !features.every((f): f is string => typeof f === 'string')) {
    throw new TokenError('bad_claims', 'lease token claim "features" must be an array of strings');
  }
  const grace = readFlag(claims, 'grace');
  return {
    typ: LEASE_TOKEN_TYPE,
    iss: readString(claims, 'iss'),
    sub,
    subjectType: sub.slice(0, colon),
    subjectId: sub.slice(colon + 1),
    aud: readString(claims, 'aud'),
    jti: readString(claims, 'jti'),
    tenantId: readString(claims, 'tenant_id'),
    entitlementId: readString(claims, 'entitlement_id'),
    policy: readString(claims, 'policy'),
    features: [...features],
    iat: readDate(claims, 'iat'),
    nbf: readDate(claims, 'nbf'),
    exp: readDate(claims, 'exp'),
    grace,
    overdraft: readFlag(claims, 'overdraft'),
    borrowed: readFlag(claims, 'borrowed'),
  };
}

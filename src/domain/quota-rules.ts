/**
 * The quota rules as pure functions. A quota is a named limit in policy_json.quotas
 * (`{"dashboards": 5}`); each installation recorded against the entitlement uses one unit of it,
 * and removing the installation returns the unit. The quota service (quotas.ts) reads, asks these,
 * and writes. Refusals are AppErrors with the API's codes.
 *
 * The lifecycle (the seed: "no new dashboards can be created; existing dashboards continue to work
 * (read-only); 30-day grace period for renewal; after grace, template features disabled"), mapped
 * onto this server's statuses (deriveStatus, types.ts): a new installation, or a change to one,
 * only while the entitlement is active (started, not ended, neither suspended nor revoked);
 * reading, listing and removing installations work in every status.
 */
import { AppError } from '../errors.ts';
import { canonicalJson } from '../tokens/strict-json.ts';
import { graceRefusal, inGrace } from './lease-rules.ts';
import type { Entitlement, Installation, QuotaState } from './types.ts';
import type { QuotaDay } from './store.ts';

/**
 * A quota's name: a slug, but not `__proto__` (a JSON object parsed into JavaScript would lose
 * that key without a word).
 */
export const QUOTA_NAME = /^(?!__proto__$)[a-z0-9_-]{1,64}$/;
/** The most quotas one policy names. */
export const MAX_QUOTAS = 64;
/** The highest limit of a quota (units). */
export const MAX_QUOTA_LIMIT = 1_000_000;
/** An installation's metadata: a JSON object of at most this many bytes as (canonical) JSON. */
export const METADATA_MAX_BYTES = 16_384;
/** An installation's name: 1 to this many characters, no control characters. */
export const INSTALLATION_NAME_MAX = 200;
/** A version, a principal id or an idempotency key: 1 to this many visible characters. */
export const INSTALLATION_TOKEN_MAX = 200;

/** What an install asks for (the service's input). */
export interface InstallInput {
  quota: string;
  name: string;
  metadata?: Record<string, unknown> | undefined;
  version?: string | null | undefined;
  principalId?: string | null | undefined;
  idempotencyKey?: string | null | undefined;
}

/** An install request after checkInstallFields: every field present, metadata as canonical JSON. */
export interface CheckedInstall {
  quota: string;
  name: string;
  metadata: Record<string, unknown>;
  metadataJson: string;
  version: string | null;
  principalId: string | null;
  idempotencyKey: string | null;
}

// Visible characters only: no whitespace, no control or format characters.
const TOKEN = /^[^\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u;
// A name for people: spaces inside, but at least one visible character and no control ones.
const NAME = /^(?=.*[^\s\p{Cf}])[^\p{Cc}\p{Zl}\p{Zp}]+$/u;
const TOKEN_WORDS = 'must not contain spaces or control characters';

type Issue = { path: string; message: string };

/** An optional text field: the value, or null when absent or bad (then an issue is pushed). */
function optionalText(
  issues: Issue[],
  path: string,
  v: unknown,
  max: number,
  re: RegExp,
  words: string,
): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') issues.push({ path, message: 'must be a string' });
  else if (v.length < 1 || v.length > max)
    issues.push({ path, message: `must be 1 to ${max} characters` });
  else if (!re.test(v)) issues.push({ path, message: words });
  else return v;
  return null;
}

function refuse(issues: Issue[]): never {
  throw new AppError('invalid_request', `${issues[0]!.path}: ${issues[0]!.message}`, { issues });
}

/**
 * Checks an install request's fields (the one home of their limits, for every face: HTTP, CLI,
 * the Template Licensing API). Field paths in details.issues use the wire names.
 *
 * @throws AppError `invalid_request`, details.issues[{path, message}] naming each bad field
 */
export function checkInstallFields(input: InstallInput): CheckedInstall {
  const issues: Issue[] = [];
  if (typeof input.quota !== 'string' || !QUOTA_NAME.test(input.quota))
    issues.push({ path: 'quota', message: 'must be a slug: 1 to 64 of a-z 0-9 _ -' });
  if (input.name === undefined || input.name === null)
    issues.push({ path: 'name', message: 'name is required' });
  const name = optionalText(
    issues,
    'name',
    input.name,
    INSTALLATION_NAME_MAX,
    NAME,
    'must hold a visible character and no control characters',
  );
  const version = optionalText(
    issues,
    'version',
    input.version,
    INSTALLATION_TOKEN_MAX,
    TOKEN,
    TOKEN_WORDS,
  );
  const principalId = optionalText(
    issues,
    'principal_id',
    input.principalId,
    INSTALLATION_TOKEN_MAX,
    TOKEN,
    TOKEN_WORDS,
  );
  const idempotencyKey = optionalText(
    issues,
    'idempotency_key',
    input.idempotencyKey,
    INSTALLATION_TOKEN_MAX,
    TOKEN,
    TOKEN_WORDS,
  );
  const metadata = input.metadata ?? {};
  let metadataJson = '{}';
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    issues.push({ path: 'metadata', message: 'must be a JSON object' });
  } else {
    try {
      metadataJson = canonicalJson(metadata);
      if (Buffer.byteLength(metadataJson) > METADATA_MAX_BYTES)
        issues.push({
          path: 'metadata',
          message: `must be at most ${METADATA_MAX_BYTES} bytes as JSON`,
        });
    } catch {
      issues.push({ path: 'metadata', message: 'must hold JSON values only' });
    }
  }
  if (issues.length > 0) refuse(issues);
  return {
    quota: input.quota,
    name: name!,
    metadata,
    metadataJson,
    version,
    principalId,
    idempotencyKey,
  };
}

/**
 * Checks a version given on its own (setVersion).
 *
 * @throws AppError `invalid_request` (details.issues names `version`)
 */
export function checkVersion(version: unknown): string {
  const issues: Issue[] = [];
  if (version === undefined || version === null)
    issues.push({ path: 'version', message: 'version is required' });
  const v = optionalText(issues, 'version', version, INSTALLATION_TOKEN_MAX, TOKEN, TOKEN_WORDS);
  if (issues.length > 0) refuse(issues);
  return v!;
}

/**
 * Is a retried install the same request as the installation its key made? Same quota, name,
 * metadata (as canonical JSON), version and principal.
 */
export function sameInstall(first: Installation, again: CheckedInstall): boolean {
  return (
    first.quota === again.quota &&
    first.name === again.name &&
    first.version === again.version &&
    first.principalId === again.principalId &&
    canonicalJson(first.metadata) === again.metadataJson
  );
}

/**
 * The limit of a quota the entitlement's policy names.
 *
 * @throws AppError `invalid_request` (details.issues names `quota`; details.quotas lists the names
 *   the policy has) when the policy has no such quota
 */
export function quotaLimit(e: Entitlement, quota: string): number {
  // Own keys only: a quota called `constructor` must not find Object.prototype's.
  const quotas = e.policy.quotas ?? {};
  if (Object.hasOwn(quotas, quota)) return quotas[quota]!;
  const names = Object.keys(quotas).sort();
  const message = `${e.id} has no quota ${quota}`;
  throw new AppError(
    'invalid_request',
    names.length > 0
      ? `${message} (its quotas: ${names.join(', ')})`
      : `${message}; its policy_json has no quotas`,
    { issues: [{ path: 'quota', message }], entitlement_id: e.id, quotas: names },
  );
}

/**
 * May the entitlement take a new installation, or a change to one, at `now` (ms)? Only while it is
 * active. In grace installations stay readable (and removable) but none is added or changed; after
 * grace the same, and the product's features are off (check says status `expired`).
 *
 * @throws AppError `entitlement_inactive`: details.reason `revoked`, `suspended`, `pending` or
 *   `expired` (with details.status `grace` during the grace period)
 */
export function checkInstallable(e: Entitlement, now: number): void {
  if (!inGrace(e, now)) return;
  throw graceRefusal(
    e,
    'existing installations stay readable, but none is added or changed',
    'renew the entitlement first (its end moves forward), then install',
  );
}

/**
 * Is a unit of the quota free with `used` taken? A limit lowered under use leaves the
 * installations in place and refuses new ones until enough are removed.
 *
 * @throws AppError `quota_exhausted` (details: entitlement_id, quota, limit, used)
 */
export function checkQuotaFree(e: Entitlement, quota: string, limit: number, used: number): void {
  if (used < limit) return;
  throw new AppError(
    'quota_exhausted',
    `${e.id} uses ${used} of ${limit} ${quota}; remove one to install another`,
    { entitlement_id: e.id, quota, limit, used },
  );
}

/**
 * One state per quota of the policy, by name: `remaining` never goes below 0 (a limit lowered
 * under use). `counts` is the entitlement's installations per quota name.
 */
export function quotaStates(
  e: Entitlement,
  counts: Readonly<Record<string, number>>,
): QuotaState[] {
  return Object.entries(e.policy.quotas ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([quota, limit]) => {
      const used = Object.hasOwn(counts, quota) ? counts[quota]! : 0;
      return { quota, limit, used, remaining: Math.max(0, limit - used) };
    });
}

/** One quota on one UTC day: installs and removals that day, units in use at its end. */
export interface QuotaDayUse {
  installed: number;
  removed: number;
  inUse: number;
}

/**
 * Each quota's use on each of `days` (00:00 UTC, ms), from its use now and the logged installs and
 * removals (`changes`, oldest first, covering every day asked and all days after): the units in
 * use at the end of a day are today's count less the changes of the days after it.
 */
export function quotaDayUses(
  now: readonly QuotaState[],
  changes: readonly QuotaDay[],
  days: readonly number[],
): Map<number, Record<string, QuotaDayUse>> {
  const inUse = new Map(now.map((q) => [q.quota, q.used]));
  const out = new Map<number, Record<string, QuotaDayUse>>();
  let next = changes.length - 1;
  // Newest day first, walking the changes back in step.
  for (const day of [...days].sort((a, b) => b - a)) {
    const that = new Map<string, QuotaDay>();
    for (; next >= 0 && changes[next]!.day >= day; next--)
      if (changes[next]!.day === day) that.set(changes[next]!.quota, changes[next]!);
    const uses = now.map(({ quota }): [string, QuotaDayUse] => {
      const c = that.get(quota);
      const end = inUse.get(quota)!;
      inUse.set(quota, end - (c?.added ?? 0) + (c?.removed ?? 0));
      return [quota, { installed: c?.added ?? 0, removed: c?.removed ?? 0, inUse: end }];
    });
    // fromEntries defines own properties: a quota named __proto__ stays a quota.
    out.set(day, Object.fromEntries(uses));
  }
  return out;
}

/**
 * The rules about who may change an entitlement, and how, whoever writes it: the admin (the manual
 * path, src/domain/entitlements.ts) or a signed vendor bundle (src/sync/import-plan.ts). Pure
 * functions over domain objects: both paths ask them, and each turns a refusal into its own answer
 * (the admin gets an error; a bundle record is refused with the whole bundle, or skipped as
 * `ignored`).
 *
 * The stored statuses and their moves:
 * - `active` ⇄ `suspended`: the admin (suspend, resume) for a manual entitlement; a bundle's
 *   snapshot for its own (a listed one is made active, an unlisted one suspended).
 * - `active` | `suspended` → `revoked`: the owner only, and final. A bundle may also revoke an id
 *   in advance (the permanent revocation list): an entitlement of that id never comes.
 */
import { AppError } from '../errors.ts';
import type { Entitlement, Policy, Source } from './types.ts';

/** Who writes an entitlement: the admin (`manual`) or a vendor bundle (`bundle`), as `source` says. */
export type Writer = Source;

/**
 * Why a writer may not change an entitlement:
 * - `owned_by_bundle`: the admin asked to change an entitlement a vendor bundle manages;
 * - `owned_by_customer`: a bundle named an entitlement the admin made (a bundle never takes over
 *   or revokes the customer's own);
 * - `revoked_is_final`: the entitlement (or, for a bundle, the id) is revoked; nothing changes it.
 */
export type Refusal = 'owned_by_bundle' | 'owned_by_customer' | 'revoked_is_final';

/**
 * Whether `writer` may change an entitlement at all. Ownership is asked first (one owner per
 * entitlement, for its whole life), then finality.
 *
 * @param current - the stored entitlement, or undefined for an id not stored
 * @param revokedForGood - the id is on the permanent revocation list (bundles only)
 * @returns the refusal, or null when the change may go on
 */
export function changeRefusal(
  current: Pick<Entitlement, 'source' | 'status'> | undefined,
  writer: Writer,
  revokedForGood = false,
): Refusal | null {
  if (current !== undefined && current.source !== writer)
    return writer === 'manual' ? 'owned_by_bundle' : 'owned_by_customer';
  if (current?.status === 'revoked' || revokedForGood) return 'revoked_is_final';
  return null;
}

/** What the admin asks of one entitlement (the manual path's lifecycle and edits). */
export type ManualAction = 'update' | 'suspend' | 'resume' | 'revoke' | 'renew';

/** The message of a `revoked_is_final` refusal, per action (all answered `409 conflict`). */
const REVOKED: Record<ManualAction, (id: string) => string> = {
  update: (id) => `${id} is revoked; a revoked entitlement cannot be changed`,
  suspend: (id) => `${id} is revoked; it cannot be suspended`,
  resume: (id) => `${id} is revoked; revocation is final`,
  revoke: (id) => `${id} is revoked already`,
  renew: (id) => `${id} is revoked; it cannot be renewed`,
};

/**
 * The error refusing `action` on `e` by the admin, or undefined when it may go on: a
 * bundle-managed entitlement (`managed_by_bundle`), a revoked one (`conflict`), suspending a
 * suspended one or resuming an active one (`conflict`).
 */
export function manualChangeError(e: Entitlement, action: ManualAction): AppError | undefined {
  const refusal = changeRefusal(e, 'manual');
  if (refusal === 'owned_by_bundle')
    return new AppError(
      'managed_by_bundle',
      `${e.id} is managed by vendor bundles; only a newer bundle can change it`,
      { entitlement_id: e.id },
    );
  if (refusal === 'revoked_is_final') return new AppError('conflict', REVOKED[action](e.id));
  if (action === 'suspend' && e.status === 'suspended')
    return new AppError('conflict', `${e.id} is suspended already`);
  if (action === 'resume' && e.status === 'active')
    return new AppError('conflict', `${e.id} is not suspended`);
  return undefined;
}

/** Throws manualChangeError(e, action) when there is one. */
export function assertManualChange(e: Entitlement, action: ManualAction): void {
  const err = manualChangeError(e, action);
  if (err) throw err;
}

/**
 * A term is a non-empty interval: `ends_at` after `starts_at` (ms). Checked for manual creates
 * and edits and for every bundle record.
 */
export function termIsValid(startsAt: number, endsAt: number): boolean {
  return endsAt > startsAt;
}

/** An entitlement never moves to another tenant or product, whoever writes it: a new id is needed. */
export function movesAccount(
  current: Pick<Entitlement, 'tenantId' | 'productId'>,
  next: Pick<Entitlement, 'tenantId' | 'productId'>,
): boolean {
  return current.tenantId !== next.tenantId || current.productId !== next.productId;
}

/**
 * The vendor's revision rule for a bundle record over the stored entitlement: `rev` never goes
 * down (`rollback`), and goes up with every change of policy or term (`same_rev`).
 *
 * @param heldRev - the stored rev (null for an entitlement that never came in a bundle)
 * @param changed - the record's policy or term differs from the stored one
 */
export function revisionRefusal(
  heldRev: number | null,
  rev: number,
  changed: boolean,
): 'rollback' | 'same_rev' | null {
  if (heldRev === null) return null;
  if (rev < heldRev) return 'rollback';
  if (changed && rev === heldRev) return 'same_rev';
  return null;
}

/**
 * The admin may change a policy's type only while nothing runs under the old one (leases and
 * seats are counted by type). A bundle is not held to it: its record is the vendor's contract and
 * is applied as signed.
 */
export function policyTypeLocked(
  from: Policy,
  to: Policy,
  inUse: { activeLeases: number; seatsAssigned: number },
): boolean {
  return to.type !== from.type && (inUse.activeLeases > 0 || inUse.seatsAssigned > 0);
}

/**
 * A new seat limit under what is in use now: reported by an import (`seats_cut`), never enforced
 * on running leases or held seats; nobody new gets a seat until use is under the limit.
 *
 * @param inUse - seats assigned for a named-seat policy, leases in force otherwise
 */
export function cutsSeats(policy: Policy, inUse: number): boolean {
  return policy.max_seats !== undefined && inUse > policy.max_seats;
}

/**
 * Something a person should know about an entitlement just written, though nothing stops it:
 * - `already_expired`: its end (`at`, ms) is not after `now`: no lease is granted on arrival
 *   (renewals of earlier leases may still be, within grace_days);
 * - `not_started`: its start (`at`, ms) is after `now`: no lease until then (status `pending`).
 */
export interface TermWarning {
  code: 'already_expired' | 'not_started';
  at: number;
}

/**
 * The warnings for a term written at `now` (ms): creating one that has already ended, or has not
 * begun, is allowed (back-dated contracts, entitlements made ahead of time), and said.
 */
export function termWarnings(
  term: Pick<Entitlement, 'startsAt' | 'endsAt'>,
  now: number,
): TermWarning[] {
  if (now > term.endsAt) return [{ code: 'already_expired', at: term.endsAt }];
  if (now < term.startsAt) return [{ code: 'not_started', at: term.startsAt }];
  return [];
}

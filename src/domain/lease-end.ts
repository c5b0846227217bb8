import type { LeaseRepo } from './store.ts';
import type { Lease } from './types.ts';

/**
 * Ends an active lease: its row, the entitlement's active-lease counter and the event, the one
 * home of that bookkeeping for every path that ends a lease (release, revoke, expiry, a seat
 * revoke). Returns false, writing nothing more, when the lease was no longer active (someone else
 * ended it). `reason` goes on the event (e.g. `seat_revoked`). Call inside a transaction.
 */
export function endLease(
  leases: LeaseRepo,
  l: Lease,
  state: 'released' | 'revoked' | 'expired',
  now: number,
  reason: string | null = null,
): boolean {
  if (!leases.end(l.id, state, now)) return false;
  const active = leases.bumpActive(l.entitlementId, -1);
  leases.event({
    at: now,
    kind: state === 'released' ? 'release' : state === 'revoked' ? 'revoke' : 'expire',
    entitlementId: l.entitlementId,
    leaseId: l.id,
    subjectType: l.subjectType,
    subjectKey: l.subjectKey,
    activeAfter: active,
    reason,
  });
  return true;
}

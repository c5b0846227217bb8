import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { identifier, leaseListQuerySchema, parseWith, statusQuerySchema } from '../../schemas.ts';
import { entitlementView, leaseView } from '../../views.ts';
import { toIso } from '../../clock.ts';
import { mustSee, scopedTenant } from '../scope.ts';

/**
 * Status, keys, and the admin lease list. The client lease routes (grant, renew, release) are not
 * routed here: the dispatch serves them straight (http/lease-api.ts, http/dispatch.ts).
 */
export function registerLeaseRoutes(
  app: Hono<AppEnv>,
  { services, clock, info, auth }: RouteDeps,
): void {
  app.get('/v1/license/status', auth('GET /v1/license/status'), (c) => {
    const q = parseWith(statusQuerySchema, c.req.query(), 'query');
    const s = services.leases.status({
      productId: q.product_id,
      subjectType: q.subject_type,
      subjectId: q.subject_id,
      tenantId: scopedTenant(c, q.tenant_id),
    });
    const e = entitlementView(s.entitlement, clock.now());
    return c.json({
      entitlement_id: e.entitlement_id,
      tenant_id: e.tenant_id,
      status: e.status,
      current_lease: s.lease
        ? { lease_id: s.lease.id, expires_at: toIso(s.lease.expiresAt) }
        : null,
      features: e.policy_json.features ?? [],
      usage: {
        concurrent_seats_used: s.leasesInUse,
        max_seats: e.policy_json.max_seats ?? null,
        ...(s.entitlement.policy.type === 'per_user' || s.entitlement.policy.type === 'per_machine'
          ? { seats_assigned: s.seatsAssigned, seat_held: s.seat !== undefined }
          : {}),
      },
    });
  });

  app.get('/v1/license/keys', (c) => {
    return c.json({ keys: [{ kid: info.kid, public_key: info.public_key, status: 'active' }] });
  });

  app.get('/v1/leases', auth('GET /v1/leases'), (c) => {
    const q = parseWith(leaseListQuerySchema, c.req.query(), 'query');
    const r = services.leases.list({
      entitlementId: q.entitlement_id,
      tenantId: scopedTenant(c, q.tenant_id),
      productId: q.product_id,
      subjectType: q.subject_type,
      subjectId: q.subject_id,
      cursor: q.cursor,
      limit: q.limit,
    });
    return c.json({ data: r.items.map(leaseView), next_cursor: r.nextCursor });
  });

  app.post('/v1/leases/:id/revoke', auth('POST /v1/leases/:id/revoke'), (c) => {
    const id = parseWith(identifier, c.req.param('id'), 'lease id');
    const lease = services.leases.get(id);
    const e = services.entitlements.get(lease.entitlementId);
    mustSee(c, e, `no lease ${id}`);
    return c.json(leaseView(services.leases.revoke(id, c.get('principal').actor)));
  });
}

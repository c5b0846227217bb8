import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { identifier, leaseListQuerySchema, parseWith, statusQuerySchema } from '../../schemas.ts';
import { keysView, leaseView, pageView, subjectStatusView } from '../../views.ts';
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
    return c.json(subjectStatusView(s, clock.now()));
  });

  app.get('/v1/license/keys', (c) => {
    return c.json(keysView(info));
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
    return c.json(pageView(r, leaseView));
  });

  app.post('/v1/leases/:id/revoke', auth('POST /v1/leases/:id/revoke'), (c) => {
    const id = parseWith(identifier, c.req.param('id'), 'lease id');
    const lease = services.leases.get(id);
    const e = services.entitlements.get(lease.entitlementId);
    mustSee(c, e, `no lease ${id}`);
    return c.json(leaseView(services.leases.revoke(id, c.get('principal').actor)));
  });
}

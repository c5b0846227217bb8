import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { readJson } from '../middleware.ts';
import {
  entitlementCreateSchema,
  entitlementUpdateSchema,
  identifier,
  importEnvelopeSchema,
  listQuerySchema,
  parseImportItems,
  parseWith,
  renewSchema,
} from '../../schemas.ts';
import { entitlementView } from '../../views.ts';

/** /v1/entitlements: create, list, show, update, lifecycle, bulk import. */
export function registerEntitlementRoutes(app: Hono<AppEnv>, { services, clock, auth }: RouteDeps): void {
  const view = (e: Parameters<typeof entitlementView>[0]) => entitlementView(e, clock.now());
  const idParam = (raw: string) => parseWith(identifier, raw, 'entitlement id');

  app.post('/v1/entitlements', auth('write'), async (c) => {
    const input = parseWith(entitlementCreateSchema, await readJson(c));
    const e = services.entitlements.create(input, c.get('principal').actor);
    return c.json(view(e), 201);
  });

  app.get('/v1/entitlements', auth('read'), (c) => {
    const q = parseWith(listQuerySchema, c.req.query(), 'query');
    const r = services.entitlements.list({ tenantId: q.tenant_id, productId: q.product_id, status: q.status, cursor: q.cursor, limit: q.limit });
    return c.json({ data: r.items.map(view), next_cursor: r.nextCursor });
  });

  app.post('/v1/entitlements/import', auth('write'), async (c) => {
    const envelope = parseWith(importEnvelopeSchema, await readJson(c));
    const items = parseImportItems(envelope.entitlements);
    const r = services.entitlements.importMany(items, c.get('principal').actor);
    return c.json(r, 200);
  });

  app.get('/v1/entitlements/:id', auth('read'), (c) => {
    const e = services.entitlements.get(idParam(c.req.param('id')));
    return c.json({ ...view(e), usage: services.leases.usageNow(e) });
  });

  const update = auth('write');
  for (const method of ['put', 'patch'] as const) {
    app[method]('/v1/entitlements/:id', update, async (c) => {
      const id = idParam(c.req.param('id'));
      const patch = parseWith(entitlementUpdateSchema, await readJson(c));
      return c.json(view(services.entitlements.update(id, patch, c.get('principal').actor)));
    });
  }

  for (const action of ['suspend', 'resume', 'revoke'] as const) {
    app.post(`/v1/entitlements/:id/${action}`, auth('write'), (c) => {
      const id = idParam(c.req.param('id'));
      return c.json(view(services.entitlements[action](id, c.get('principal').actor)));
    });
  }

  app.post('/v1/entitlements/:id/renew', auth('write'), async (c) => {
    const id = idParam(c.req.param('id'));
    const { period_months } = parseWith(renewSchema, await readJson(c));
    return c.json(view(services.entitlements.renew(id, period_months, c.get('principal').actor)));
  });
}

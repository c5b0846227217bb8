import type { Hono, Context } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { readJson } from '../middleware.ts';
import { scopedTenant, visibleEntitlement } from '../scope.ts';
import {
  entitlementCreateSchema,
  entitlementUpdateSchema,
  importEnvelopeSchema,
  listQuerySchema,
  parseImportItems,
  parseWith,
  renewSchema,
  checkQuerySchema,
  usageCsvQuerySchema,
} from '../../schemas.ts';
import {
  createdEntitlementView,
  entitlementDetailView,
  entitlementView,
  importResultView,
  leaseCheckView,
  pageView,
  usageCsv,
  usageView,
} from '../../views.ts';

/** /v1/entitlements: create, list, show, update, lifecycle, bulk import, check, usage. */
export function registerEntitlementRoutes(
  app: Hono<AppEnv>,
  { services, clock, auth }: RouteDeps,
): void {
  const view = (e: Parameters<typeof entitlementView>[0]) => entitlementView(e, clock.now());
  const visible = (c: Context<AppEnv>) => visibleEntitlement(c, services.entitlements);

  app.post('/v1/entitlements', auth('POST /v1/entitlements'), async (c) => {
    const input = parseWith(entitlementCreateSchema, await readJson(c));
    const e = services.entitlements.create(input, c.get('principal').actor);
    return c.json(createdEntitlementView(e, clock.now()), 201);
  });

  app.get('/v1/entitlements', auth('GET /v1/entitlements'), (c) => {
    const q = parseWith(listQuerySchema, c.req.query(), 'query');
    const r = services.entitlements.list({
      idPrefix: q.id_prefix,
      tenantId: scopedTenant(c, q.tenant_id),
      productId: q.product_id,
      status: q.status,
      cursor: q.cursor,
      limit: q.limit,
    });
    return c.json(pageView(r, view));
  });

  app.post('/v1/entitlements/import', auth('POST /v1/entitlements/import'), async (c) => {
    const envelope = parseWith(importEnvelopeSchema, await readJson(c));
    const items = parseImportItems(envelope.entitlements);
    const r = await services.entitlements.importMany(items, c.get('principal').actor);
    return c.json(importResultView(r), 200);
  });

  app.get('/v1/entitlements/:id', auth('GET /v1/entitlements/:id'), (c) => {
    const e = visible(c);
    return c.json(
      entitlementDetailView(e, clock.now(), services.leases.usageNow(e), services.quotas.states(e)),
    );
  });

  // The seed sends PUT with only the fields to change; PATCH is the same.
  for (const method of ['put', 'patch'] as const) {
    app[method](
      '/v1/entitlements/:id',
      auth(`${method.toUpperCase() as 'PUT' | 'PATCH'} /v1/entitlements/:id`),
      async (c) => {
        const e = visible(c);
        const patch = parseWith(entitlementUpdateSchema, await readJson(c));
        return c.json(view(services.entitlements.update(e.id, patch, c.get('principal').actor)));
      },
    );
  }

  for (const action of ['suspend', 'resume', 'revoke'] as const) {
    app.post(`/v1/entitlements/:id/${action}`, auth(`POST /v1/entitlements/:id/${action}`), (c) => {
      const e = visible(c);
      return c.json(view(services.entitlements[action](e.id, c.get('principal').actor)));
    });
  }

  app.post('/v1/entitlements/:id/renew', auth('POST /v1/entitlements/:id/renew'), async (c) => {
    const e = visible(c);
    const { period_months } = parseWith(renewSchema, await readJson(c));
    return c.json(view(services.entitlements.renew(e.id, period_months, c.get('principal').actor)));
  });

  app.get('/v1/entitlements/:id/check', auth('GET /v1/entitlements/:id/check'), (c) => {
    const e = visible(c);
    const q = parseWith(checkQuerySchema, c.req.query(), 'query');
    const subject =
      q.subject_id !== undefined
        ? { subjectType: q.subject_type, subjectId: q.subject_id }
        : undefined;
    return c.json(
      leaseCheckView(e, clock.now(), services.leases.check(e, subject), services.quotas.states(e)),
    );
  });

  app.get('/v1/entitlements/:id/usage', auth('GET /v1/entitlements/:id/usage'), (c) => {
    const e = visible(c);
    return c.json(usageView(e, services.usage.report(e)));
  });

  app.get('/v1/entitlements/:id/usage.csv', auth('GET /v1/entitlements/:id/usage.csv'), (c) => {
    const e = visible(c);
    const q = parseWith(usageCsvQuerySchema, c.req.query(), 'query');
    c.header('Content-Type', 'text/csv; charset=utf-8');
    c.header('Content-Disposition', `attachment; filename="usage-${e.id}.csv"`);
    return c.body(usageCsv(e, services.usage.daily(e, q.days ?? 30)));
  });
}

import type { Hono } from 'hono';
import type { AppEnv } from '../../types.ts';
import type { RouteDeps } from '../../../app.ts';
import { readJson } from '../../middleware.ts';
import { identifier, parseWith } from '../../../schemas.ts';
import { purchaseSchema, templatePublishSchema } from './schemas.ts';
import { licenseView, templateListView, templateView } from './views.ts';

/**
 * /api/v1/marketplace: the template catalogue (list, one, publish) and the purchase, which makes
 * an entitlement (domain/templates.ts).
 */
export function registerMarketplaceRoutes(
  app: Hono<AppEnv>,
  { services, clock, auth }: RouteDeps,
): void {
  const templateId = (c: { req: { param(name: string): string | undefined } }) =>
    parseWith(identifier, c.req.param('template_id'), 'template id');

  app.get('/api/v1/marketplace/templates', auth('GET /api/v1/marketplace/templates'), (c) =>
    c.json(templateListView(services.templates.catalogue())),
  );

  app.get(
    '/api/v1/marketplace/templates/:template_id',
    auth('GET /api/v1/marketplace/templates/:template_id'),
    (c) => c.json(templateView(services.templates.template(templateId(c)))),
  );

  app.put(
    '/api/v1/marketplace/templates/:template_id',
    auth('PUT /api/v1/marketplace/templates/:template_id'),
    async (c) => {
      const id = templateId(c);
      const input = parseWith(templatePublishSchema, await readJson(c));
      const r = services.templates.publish(id, input, c.get('principal').actor);
      return c.json(templateView(r.template));
    },
  );

  app.post(
    '/api/v1/marketplace/templates/:template_id/licenses',
    auth('POST /api/v1/marketplace/templates/:template_id/licenses'),
    async (c) => {
      const id = templateId(c);
      const input = parseWith(purchaseSchema, await readJson(c));
      const e = services.templates.purchase(id, input, c.get('principal').actor);
      const d = services.templates.dashboards(e);
      return c.json(licenseView(e, clock.now(), services.leases.usageNow(e), d), 201);
    },
  );
}

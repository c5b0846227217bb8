import type { Hono, Context } from 'hono';
import type { AppEnv } from '../../types.ts';
import type { RouteDeps } from '../../../app.ts';
import { readJson } from '../../middleware.ts';
import { parseWith, renewSchema } from '../../../schemas.ts';
import { seatHandlers } from '../seats.ts';
import { licensePatchSchema, permissionQuerySchema } from './schemas.ts';
import { visibleLicense } from './scope.ts';
import { installCheckView, licenseView, permissionView, templateUsageView } from './views.ts';
import type { Entitlement } from '../../../domain/types.ts';

const LICENSE = '/api/v1/organizations/:org/licenses/:license_id';

/**
 * /api/v1/organizations/{org}/licenses/{license_id}: the seed's license routes over the core:
 * seats (the /v1 seat handlers), auto_update, renew, usage, the entitlements check and the
 * permission check.
 */
export function registerLicenseRoutes(
  app: Hono<AppEnv>,
  { services, clock, auth }: RouteDeps,
): void {
  const visible = (c: Context<AppEnv>) => visibleLicense(c, services.templates);
  const view = (e: Entitlement) =>
    licenseView(e, clock.now(), services.leases.usageNow(e), services.templates.dashboards(e));
  const seats = seatHandlers(services);

  app.get(`${LICENSE}/seats`, auth(`GET ${LICENSE}/seats`), (c) => seats.list(c, visible(c)));
  app.post(`${LICENSE}/seats`, auth(`POST ${LICENSE}/seats`), (c) => seats.assign(c, visible(c)));
  app.post(`${LICENSE}/seats/bulk`, auth(`POST ${LICENSE}/seats/bulk`), (c) =>
    seats.bulk(c, visible(c)),
  );
  app.delete(`${LICENSE}/seats/:seat_id`, auth(`DELETE ${LICENSE}/seats/:seat_id`), (c) =>
    seats.revoke(c, visible(c)),
  );

  app.patch(LICENSE, auth(`PATCH ${LICENSE}`), async (c) => {
    const e = visible(c);
    const { auto_update } = parseWith(licensePatchSchema, await readJson(c));
    return c.json(
      view(services.templates.setAutoUpdate(e.id, auto_update, c.get('principal').actor)),
    );
  });

  app.post(`${LICENSE}/renew`, auth(`POST ${LICENSE}/renew`), async (c) => {
    const id = visible(c).id;
    const months = parseWith(renewSchema, await readJson(c)).period_months;
    return c.json(view(services.entitlements.renew(id, months, c.get('principal').actor)));
  });

  app.get(`${LICENSE}/usage`, auth(`GET ${LICENSE}/usage`), (c) => {
    const e = visible(c);
    const t = services.templates.findTemplate(e.productId);
    const d = services.templates.dashboards(e);
    return c.json(templateUsageView(e, t, services.usage.report(e), d));
  });

  app.get(`${LICENSE}/entitlements`, auth(`GET ${LICENSE}/entitlements`), (c) =>
    c.json(installCheckView(services.templates.installCheck(visible(c)))),
  );

  app.get(`${LICENSE}/permissions`, auth(`GET ${LICENSE}/permissions`), (c) => {
    const e = visible(c);
    const q = parseWith(permissionQuerySchema, c.req.query(), 'query');
    const r = services.templates.permission(e, q.principal_id, q.permission);
    return c.json(permissionView(e, q.principal_id, q.permission, r));
  });
}

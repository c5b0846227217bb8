import type { Hono } from 'hono';
import type { AppEnv } from '../../types.ts';
import type { RouteDeps } from '../../../app.ts';
import { readJson } from '../../middleware.ts';
import { identifier, parseWith } from '../../../schemas.ts';
import { pageView } from '../../../views.ts';
import { installedQuerySchema, installSchema, updateTemplateSchema } from './schemas.ts';
import { notOtherTenant, organizationOf } from './scope.ts';
import { dashboardView } from './views.ts';

const ORG = '/api/v1/organizations/:org';

/**
 * Template installs: a dashboard is an installation of the `dashboards` quota on one of the
 * organization's licenses for the template (domain/templates.ts install); the list; the manual
 * update, which records the version; the uninstall, which frees the unit.
 */
export function registerInstallRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  app.post(
    `${ORG}/templates/:template_id/install`,
    auth(`POST ${ORG}/templates/:template_id/install`),
    async (c) => {
      const org = organizationOf(c);
      const templateId = parseWith(identifier, c.req.param('template_id'), 'template id');
      notOtherTenant(c, org, `no license for template ${templateId} in organization ${org}`);
      const b = parseWith(installSchema, await readJson(c));
      const key = c.req.header('idempotency-key');
      const r = services.templates.install(
        org,
        templateId,
        { ...b, ...(key !== undefined ? { idempotencyKey: key } : {}) },
        c.get('principal').actor,
      );
      // A retry with the same Idempotency-Key answers the first dashboard, 200 instead of 201.
      return c.json(dashboardView(r.installation), r.created ? 201 : 200);
    },
  );

  app.get(`${ORG}/installed-templates`, auth(`GET ${ORG}/installed-templates`), (c) => {
    const org = organizationOf(c);
    notOtherTenant(c, org, `no organization ${org}`);
    const q = parseWith(installedQuerySchema, c.req.query(), 'query');
    return c.json(pageView(services.templates.installed(org, q.cursor, q.limit), dashboardView));
  });

  app.post(
    `${ORG}/dashboards/:dashboard_id/update-template`,
    auth(`POST ${ORG}/dashboards/:dashboard_id/update-template`),
    async (c) => {
      const org = organizationOf(c);
      const id = parseWith(identifier, c.req.param('dashboard_id'), 'dashboard id');
      notOtherTenant(c, org, `no dashboard ${id} in organization ${org}`);
      const { version } = parseWith(updateTemplateSchema, await readJson(c));
      const i = services.templates.updateDashboard(org, id, version, c.get('principal').actor);
      return c.json(dashboardView(i));
    },
  );

  // Same permission as the /v1 remove (seats): a full quota's error asks for this.
  app.delete(
    `${ORG}/dashboards/:dashboard_id`,
    auth(`DELETE ${ORG}/dashboards/:dashboard_id`),
    (c) => {
      const org = organizationOf(c);
      const id = parseWith(identifier, c.req.param('dashboard_id'), 'dashboard id');
      notOtherTenant(c, org, `no dashboard ${id} in organization ${org}`);
      const i = services.templates.removeDashboard(org, id, c.get('principal').actor);
      return c.json(dashboardView(i));
    },
  );
}

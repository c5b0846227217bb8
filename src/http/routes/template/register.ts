import type { Hono } from 'hono';
import type { AppEnv } from '../../types.ts';
import type { RouteDeps } from '../../../app.ts';
import { registerMarketplaceRoutes } from './marketplace.ts';
import { registerLicenseRoutes } from './licenses.ts';
import { registerInstallRoutes } from './installs.ts';

/**
 * The Template Licensing seed's API (/api/v1/...), a thin face over the core: the marketplace
 * (templates, purchase) and the organization's licenses (seats, auto_update, renew, usage, the
 * entitlements check, the permission check, template installs).
 */
export function registerTemplateRoutes(app: Hono<AppEnv>, deps: RouteDeps): void {
  registerMarketplaceRoutes(app, deps);
  registerLicenseRoutes(app, deps);
  registerInstallRoutes(app, deps);
}

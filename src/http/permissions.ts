import type { Role } from '../domain/types.ts';

/**
 * The access model in two tables. Every admin route names its row in ROUTES; a role may call a
 * route when it has the route's permission. `global` routes see every tenant's data, so a
 * tenant-scoped token may not call them. The README prints both tables; a test walks every route
 * with every role.
 */
export const PERMISSIONS = ['read', 'write', 'seats', 'tokens', 'sync', 'audit'] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLE_PERMISSIONS = {
  admin: ['read', 'write', 'seats', 'tokens', 'sync', 'audit'],
  tenant_admin: ['read', 'seats'],
  reader: ['read', 'audit'],
} as const satisfies Record<Role, readonly Permission[]>;

export interface RouteRule {
  permission: Permission;
  /** Sees or changes data of every tenant: refused to tenant-scoped tokens. */
  global?: true;
}

export const ROUTES = {
  'POST /v1/entitlements': { permission: 'write', global: true },
  'GET /v1/entitlements': { permission: 'read' },
  'POST /v1/entitlements/import': { permission: 'write', global: true },
  'GET /v1/entitlements/:id': { permission: 'read' },
  'PUT /v1/entitlements/:id': { permission: 'write', global: true },
  'PATCH /v1/entitlements/:id': { permission: 'write', global: true },
  'POST /v1/entitlements/:id/suspend': { permission: 'write', global: true },
  'POST /v1/entitlements/:id/resume': { permission: 'write', global: true },
  'POST /v1/entitlements/:id/revoke': { permission: 'write', global: true },
  'POST /v1/entitlements/:id/renew': { permission: 'write', global: true },
  'GET /v1/entitlements/:id/check': { permission: 'read' },
  'GET /v1/entitlements/:id/usage': { permission: 'read' },
  'GET /v1/entitlements/:id/usage.csv': { permission: 'read' },
  'GET /v1/entitlements/:id/seats': { permission: 'read' },
  'POST /v1/entitlements/:id/seats': { permission: 'seats' },
  'POST /v1/entitlements/:id/seats/bulk': { permission: 'seats' },
  'DELETE /v1/entitlements/:id/seats/:seat_id': { permission: 'seats' },
  'GET /v1/entitlements/:id/installations': { permission: 'read' },
  'POST /v1/entitlements/:id/installations': { permission: 'seats' },
  'DELETE /v1/entitlements/:id/installations/:installation_id': { permission: 'seats' },
  'GET /v1/installations': { permission: 'read' },
  'GET /v1/installations/:id': { permission: 'read' },
  'PATCH /v1/installations/:id': { permission: 'seats' },
  'GET /v1/license/status': { permission: 'read' },
  'GET /v1/leases': { permission: 'read' },
  'POST /v1/leases/:id/revoke': { permission: 'seats' },
  'POST /v1/tokens': { permission: 'tokens', global: true },
  'GET /v1/tokens': { permission: 'tokens', global: true },
  'DELETE /v1/tokens/:id': { permission: 'tokens', global: true },
  'POST /v1/sync/import': { permission: 'sync', global: true },
  'POST /v1/sync/export': { permission: 'sync', global: true },
  'GET /v1/sync/status': { permission: 'read', global: true },
  'GET /v1/audit': { permission: 'audit', global: true },
  'GET /v1/whoami': { permission: 'read' },
  // The Template Licensing face (/api/v1): each route has the permission of its /v1 twin.
  'GET /api/v1/marketplace/templates': { permission: 'read' },
  'GET /api/v1/marketplace/templates/:template_id': { permission: 'read' },
  'PUT /api/v1/marketplace/templates/:template_id': { permission: 'write', global: true },
  'POST /api/v1/marketplace/templates/:template_id/licenses': { permission: 'write', global: true },
  'GET /api/v1/organizations/:org/licenses/:license_id/seats': { permission: 'read' },
  'POST /api/v1/organizations/:org/licenses/:license_id/seats': { permission: 'seats' },
  'POST /api/v1/organizations/:org/licenses/:license_id/seats/bulk': { permission: 'seats' },
  'DELETE /api/v1/organizations/:org/licenses/:license_id/seats/:seat_id': { permission: 'seats' },
  'PATCH /api/v1/organizations/:org/licenses/:license_id': { permission: 'write', global: true },
  'POST /api/v1/organizations/:org/licenses/:license_id/renew': {
    permission: 'write',
    global: true,
  },
  'GET /api/v1/organizations/:org/licenses/:license_id/usage': { permission: 'read' },
  'GET /api/v1/organizations/:org/licenses/:license_id/entitlements': { permission: 'read' },
  'GET /api/v1/organizations/:org/licenses/:license_id/permissions': { permission: 'read' },
  'POST /api/v1/organizations/:org/templates/:template_id/install': { permission: 'seats' },
  'GET /api/v1/organizations/:org/installed-templates': { permission: 'read' },
  'POST /api/v1/organizations/:org/dashboards/:dashboard_id/update-template': {
    permission: 'seats',
  },
  'DELETE /api/v1/organizations/:org/dashboards/:dashboard_id': { permission: 'seats' },
} as const satisfies Record<string, RouteRule>;

export type RouteKey = keyof typeof ROUTES;

export function roleAllows(role: Role, permission: Permission): boolean {
  return (ROLE_PERMISSIONS[role] as readonly Permission[]).includes(permission);
}

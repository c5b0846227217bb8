import type { Context } from 'hono';
import { AppError } from '../errors.ts';
import type { AppEnv } from './types.ts';
import { identifier, parseWith } from '../schemas.ts';
import type { EntitlementService } from '../domain/entitlements.ts';
import type { Entitlement } from '../domain/types.ts';

/** The tenant a token is limited to, or null for every tenant. */
export function tenantScope(c: Context<AppEnv>): string | null {
  return c.get('principal')?.tenantId ?? null;
}

/**
 * Another tenant's resource is answered exactly like a missing one (404, same message), so a
 * scoped token cannot learn that it exists.
 */
export function mustSee<T extends { tenantId: string }>(
  c: Context<AppEnv>,
  resource: T,
  notFound: string,
): T {
  const scope = tenantScope(c);
  if (scope !== null && resource.tenantId !== scope) throw new AppError('not_found', notFound);
  return resource;
}

/** A tenant filter from the query, narrowed to the token's tenant. */
export function scopedTenant(c: Context<AppEnv>, asked: string | undefined): string | undefined {
  const scope = tenantScope(c);
  if (scope === null) return asked;
  // Asking for another tenant is asking for nothing visible: a filter no row matches (ids never
  // hold control characters; not NUL, which PostgreSQL's text cannot carry).
  return asked === undefined || asked === scope ? scope : `\u0001${scope}`;
}

/** The entitlement named by the path's :id, if this token may see it (else a missing one's 404). */
export function visibleEntitlement(
  c: Context<AppEnv>,
  entitlements: EntitlementService,
): Entitlement {
  const id = parseWith(identifier, c.req.param('id'), 'entitlement id');
  return mustSee(c, entitlements.get(id), `no entitlement ${id}`);
}

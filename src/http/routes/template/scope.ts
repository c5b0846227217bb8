import type { Context } from 'hono';
import { AppError } from '../../../errors.ts';
import type { AppEnv } from '../../types.ts';
import { tenantScope } from '../../scope.ts';
import { identifier, parseWith } from '../../../schemas.ts';
import type { TemplateService } from '../../../domain/templates.ts';
import type { Entitlement } from '../../../domain/types.ts';

/** The path's organization (a tenant id). */
export function organizationOf(c: Context<AppEnv>): string {
  return parseWith(identifier, c.req.param('org'), 'organization id');
}

/**
 * The license named by the path (:org, :license_id), if this token may see it: another
 * organization's license, and any license of an organization outside the token's tenant, are
 * answered exactly like a missing one (404, same message), as /v1 answers another tenant's
 * entitlement (http/scope.ts).
 */
export function visibleLicense(c: Context<AppEnv>, templates: TemplateService): Entitlement {
  const org = organizationOf(c);
  const id = parseWith(identifier, c.req.param('license_id'), 'license id');
  notOtherTenant(c, org, `no license ${id} in organization ${org}`);
  return templates.license(org, id);
}

/** Refuses, as `not_found` with this message, an organization outside the token's tenant. */
export function notOtherTenant(c: Context<AppEnv>, org: string, notFound: string): void {
  const scope = tenantScope(c);
  if (scope !== null && scope !== org) throw new AppError('not_found', notFound);
}

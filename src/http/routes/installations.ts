import type { Hono, Context } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { AppError } from '../../errors.ts';
import { readJson } from '../middleware.ts';
import { mustSee, scopedTenant, visibleEntitlement } from '../scope.ts';
import {
  identifier,
  installationCreateSchema,
  installationListQuerySchema,
  installationPatchSchema,
  parseWith,
} from '../../schemas.ts';
import { installationView, pageView } from '../../views.ts';
import type { Installation } from '../../domain/types.ts';

/**
 * The idempotency key of an install: the `Idempotency-Key` header or the body's
 * `idempotency_key` (both given: they must agree).
 *
 * @throws AppError `invalid_request` when they differ
 */
function idempotencyKey(c: Context<AppEnv>, body: string | null | undefined): string | null {
  const header = c.req.header('idempotency-key');
  if (header === undefined) return body ?? null;
  if (body !== undefined && body !== null && body !== header)
    throw new AppError('invalid_request', 'the Idempotency-Key header and idempotency_key differ', {
      issues: [{ path: 'idempotency_key', message: 'differs from the Idempotency-Key header' }],
    });
  return header;
}

/** Installations: the units of an entitlement's quotas (policy_json.quotas). */
export function registerInstallationRoutes(app: Hono<AppEnv>, { services, auth }: RouteDeps): void {
  const visible = (c: Context<AppEnv>) => visibleEntitlement(c, services.entitlements);
  /** The installation named by the path's :id, if this token may see its entitlement. */
  const visibleInstallation = (c: Context<AppEnv>): Installation => {
    const id = parseWith(identifier, c.req.param('id'), 'installation id');
    const notFound = `no installation ${id}`;
    const i = services.quotas.get(id);
    const e = services.entitlements.get(i.entitlementId);
    mustSee(c, e, notFound);
    return i;
  };

  app.get(
    '/v1/entitlements/:id/installations',
    auth('GET /v1/entitlements/:id/installations'),
    (c) => {
      const e = visible(c);
      const q = parseWith(installationListQuerySchema, c.req.query(), 'query');
      const page = services.quotas.list(
        { entitlementId: e.id, tenant: scopedTenant(c, q.tenant_id), quota: q.quota },
        q.cursor,
        q.limit,
      );
      return c.json(pageView(page, installationView));
    },
  );

  // 201 with a new installation; 200 with the first one when its idempotency key is sent again.
  app.post(
    '/v1/entitlements/:id/installations',
    auth('POST /v1/entitlements/:id/installations'),
    async (c) => {
      const e = visible(c);
      const b = parseWith(installationCreateSchema, await readJson(c));
      const r = services.quotas.install(
        e.id,
        {
          quota: b.quota,
          name: b.name,
          metadata: b.metadata,
          version: b.version,
          principalId: b.principal_id,
          idempotencyKey: idempotencyKey(c, b.idempotency_key),
        },
        c.get('principal').actor,
      );
      return c.json(installationView(r.installation), r.created ? 201 : 200);
    },
  );

  app.delete(
    '/v1/entitlements/:id/installations/:installation_id',
    auth('DELETE /v1/entitlements/:id/installations/:installation_id'),
    (c) => {
      const e = visible(c);
      const id = parseWith(identifier, c.req.param('installation_id'), 'installation id');
      return c.json(installationView(services.quotas.remove(e.id, id, c.get('principal').actor)));
    },
  );

  app.get('/v1/installations', auth('GET /v1/installations'), (c) => {
    const q = parseWith(installationListQuerySchema, c.req.query(), 'query');
    const page = services.quotas.list(
      { entitlementId: q.entitlement_id, tenant: scopedTenant(c, q.tenant_id), quota: q.quota },
      q.cursor,
      q.limit,
    );
    return c.json(pageView(page, installationView));
  });

  app.get('/v1/installations/:id', auth('GET /v1/installations/:id'), (c) =>
    c.json(installationView(visibleInstallation(c))),
  );

  app.patch('/v1/installations/:id', auth('PATCH /v1/installations/:id'), async (c) => {
    const i = visibleInstallation(c);
    const b = parseWith(installationPatchSchema, await readJson(c));
    return c.json(
      installationView(services.quotas.setVersion(i.id, b.version, c.get('principal').actor)),
    );
  });
}

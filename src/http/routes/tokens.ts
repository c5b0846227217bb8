import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { readJson } from '../middleware.ts';
import { identifier, parseWith, tokenCreateSchema } from '../../schemas.ts';
import { apiTokenView, createdApiTokenView, pageView, whoamiView } from '../../views.ts';

/** /v1/tokens: API tokens. The secret is in the create answer only. /v1/whoami: the caller's own. */
export function registerTokenRoutes(app: Hono<AppEnv>, { services, clock, auth }: RouteDeps): void {
  app.post('/v1/tokens', auth('POST /v1/tokens'), async (c) => {
    const input = parseWith(tokenCreateSchema, await readJson(c));
    const made = services.apiTokens.create(
      {
        name: input.name,
        role: input.role,
        tenantId: input.tenant_id,
        expiresInDays: input.expires_in_days,
      },
      c.get('principal').actor,
    );
    return c.json(createdApiTokenView(made, clock.now()), 201);
  });

  app.get('/v1/tokens', auth('GET /v1/tokens'), (c) => {
    const now = clock.now();
    // Every token on one page: a server has a handful.
    return c.json(
      pageView({ items: services.apiTokens.list(), nextCursor: null }, (t) => apiTokenView(t, now)),
    );
  });

  // Who the presented token is, for the admin console's header and its role-aware controls.
  app.get('/v1/whoami', auth('GET /v1/whoami'), (c) => {
    const p = c.get('principal');
    const t = services.apiTokens.list().find((x) => x.id === p.tokenId);
    return c.json(whoamiView(p, t?.name ?? null, services.timeGuard.status()));
  });

  app.delete('/v1/tokens/:id', auth('DELETE /v1/tokens/:id'), (c) => {
    const id = parseWith(identifier, c.req.param('id'), 'token id');
    return c.json(
      apiTokenView(services.apiTokens.revoke(id, c.get('principal').actor), clock.now()),
    );
  });
}

import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import type { RouteDeps } from '../../app.ts';
import { readJson } from '../middleware.ts';
import { identifier, parseWith, tokenCreateSchema } from '../../schemas.ts';
import { apiTokenView } from '../../views.ts';

/** /v1/tokens: API tokens. The secret is in the create answer only. */
export function registerTokenRoutes(app: Hono<AppEnv>, { services, clock, auth }: RouteDeps): void {
  app.post('/v1/tokens', auth('POST /v1/tokens'), async (c) => {
    const input = parseWith(tokenCreateSchema, await readJson(c));
    const { token, record } = services.apiTokens.create(
      {
        name: input.name,
        role: input.role,
        tenantId: input.tenant_id,
        expiresInDays: input.expires_in_days,
      },
      c.get('principal').actor,
    );
    return c.json({ ...apiTokenView(record, clock.now()), token }, 201);
  });

  app.get('/v1/tokens', auth('GET /v1/tokens'), (c) => {
    return c.json({
      data: services.apiTokens.list().map((t) => apiTokenView(t, clock.now())),
      next_cursor: null,
    });
  });

  app.delete('/v1/tokens/:id', auth('DELETE /v1/tokens/:id'), (c) => {
    const id = parseWith(identifier, c.req.param('id'), 'token id');
    return c.json(
      apiTokenView(services.apiTokens.revoke(id, c.get('principal').actor), clock.now()),
    );
  });
}

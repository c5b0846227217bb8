/**
 * What the admin routes (Hono handlers) use of a request: its token's permission and its JSON
 * body. Nothing here answers, logs or counts: that is the request pipeline's (http/pipeline.ts),
 * which every answer goes through.
 */
import type { MiddlewareHandler, Context as HonoContext } from 'hono';
import { AppError } from '../errors.ts';
import type { ApiTokenService } from '../domain/api-tokens.ts';
import type { AppEnv } from './types.ts';
import { ROUTES, roleAllows, type RouteKey, type RouteRule } from './permissions.ts';
import { jsonBody } from './body.ts';

/**
 * Bearer-token authentication plus the route's row of the permission table (http/permissions.ts).
 * Sets the `principal` for the handler and the token id for the request's log line.
 *
 * @throws AppError `unauthorized` (no, malformed, unknown, expired or revoked token), `forbidden`
 *   (the role lacks the route's permission, or a tenant-scoped token on a route that spans tenants)
 */
export function requirePermission(
  tokens: () => ApiTokenService,
  route: RouteKey,
): MiddlewareHandler<AppEnv> {
  const rule: RouteRule = ROUTES[route];
  return async function authMiddleware(c, next) {
    const header = c.req.header('authorization');
    const m = header === undefined ? null : /^Bearer ([^\s]+)$/i.exec(header.trim());
    if (!m) {
      throw new AppError(
        'unauthorized',
        header === undefined
          ? 'this route needs an API token'
          : 'the Authorization header must be "Bearer <token>"',
        {},
        'send Authorization: Bearer bpls_…',
      );
    }
    const principal = tokens().authenticate(m[1]!);
    if (!roleAllows(principal.role, rule.permission)) {
      throw new AppError(
        'forbidden',
        `a ${principal.role} token may not do this (needs ${rule.permission})`,
      );
    }
    if (rule.global && principal.tenantId !== null) {
      throw new AppError(
        'forbidden',
        `a token limited to tenant ${principal.tenantId} may not do this: it spans every tenant`,
      );
    }
    c.set('principal', principal);
    c.env.tokenId = principal.tokenId;
    await next();
  };
}

/**
 * The request body as JSON. The pipeline read it whole under the route's cap before the handler
 * ran (http/dispatch.ts); this only parses it.
 *
 * @throws AppError `invalid_request` (not UTF-8, empty, not a JSON value): never a 500
 */
export async function readJson(c: HonoContext<AppEnv>): Promise<unknown> {
  return jsonBody(c.env.body);
}

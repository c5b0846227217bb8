import type { Hono } from 'hono';
import type { AppEnv } from '../types.ts';
import { openApiText } from '../openapi/build.ts';

/**
 * GET /openapi.json: the OpenAPI 3.1 document of this server's API (http/openapi/build.ts).
 * Public like /v1/license/keys: it describes routes, never data. Built on the first request.
 */
export function registerOpenApiRoute(app: Hono<AppEnv>): void {
  app.get('/openapi.json', (c) =>
    c.body(openApiText(), 200, { 'Content-Type': 'application/json' }),
  );
}

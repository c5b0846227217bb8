import type { Principal } from '../domain/api-tokens.ts';
import type { Exchange } from './pipeline.ts';

/**
 * What a Hono handler sees: the request's Exchange as `c.env` (its body, read by the pipeline; its
 * token id for the log line) and the authenticated principal.
 */
export type AppEnv = {
  Bindings: Exchange;
  Variables: {
    principal: Principal;
  };
};

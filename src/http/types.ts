import type { Principal } from '../domain/api-tokens.ts';

export type AppEnv = {
  Variables: {
    requestId: string;
    principal: Principal;
    /** The body cap of the route, set by limitBody(). */
    bodyLimit: number;
  };
};

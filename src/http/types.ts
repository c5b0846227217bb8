import type { Principal } from '../domain/api-tokens.ts';

export type AppEnv = {
  Variables: {
    requestId: string;
    principal: Principal;
  };
};

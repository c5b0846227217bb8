import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.ts';
import type { Clock } from '../clock.ts';
import { newId } from '../ids.ts';
import type { Store } from './store.ts';
import type { Actor, ApiToken, Role } from './types.ts';
import { DAY_MS } from './types.ts';

export const TOKEN_PREFIX = 'bpls_';
// bpls_ + 43 base64url characters (32 random bytes).
const TOKEN_SHAPE = /^bpls_[A-Za-z0-9_-]{43}$/;
// last_used_at is written at most this often per token, so reads do not become writes.
const TOUCH_INTERVAL_MS = 60_000;

export interface ApiTokenDeps {
  store: Store;
  clock: Clock;
  /** HMAC key for token hashes, derived from the server key: a stolen database alone cannot test guesses. */
  hashKey: Buffer;
}

export interface Principal {
  tokenId: string;
  role: Role;
  tenantId: string | null;
  actor: Actor;
}

/** Is a token in force at `now` (ms): neither revoked nor past its expiry? */
export function tokenInForce(t: Pick<ApiToken, 'revokedAt' | 'expiresAt'>, now: number): boolean {
  return t.revokedAt === null && (t.expiresAt === null || now < t.expiresAt);
}

/** API tokens: made, listed, revoked; presented tokens checked in constant time against keyed hashes. */
export function createApiTokenService({ store, clock, hashKey }: ApiTokenDeps) {
  const hash = (token: string) => createHmac('sha256', hashKey).update(token).digest();

  return {
    /**
     * Makes a token: the secret is returned here once; only its keyed hash is stored. Audited.
     * Throws nothing of its own (the store's failures only).
     */
    create(
      input: {
        name: string;
        role: Role;
        tenantId?: string | undefined;
        expiresInDays?: number | undefined;
      },
      actor: Actor,
    ): { token: string; record: ApiToken } {
      const secret = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      const now = clock.now();
      const record: ApiToken = {
        id: newId('tok', 12),
        name: input.name,
        role: input.role,
        tenantId: input.tenantId ?? null,
        prefix: secret.slice(0, 12),
        createdAt: now,
        expiresAt: input.expiresInDays === undefined ? null : now + input.expiresInDays * DAY_MS,
        lastUsedAt: null,
        revokedAt: null,
      };
      store.tx(() => {
        store.apiTokens.insert(record, hash(secret));
        store.audit.append({
          at: now,
          actor,
          action: 'token.create',
          targetType: 'token',
          targetId: record.id,
          details: {
            name: record.name,
            role: record.role,
            tenant_id: record.tenantId,
            expires_at: record.expiresAt,
          },
        });
      });
      return { token: secret, record };
    },

    /** Every token, oldest first, without hashes. Throws nothing. */
    list(): ApiToken[] {
      return store.apiTokens.list().map(({ hash: _h, ...t }) => t);
    },

    /**
     * Revokes a token at once. Audited.
     *
     * @throws AppError `not_found`; `conflict` (revoked already)
     */
    revoke(id: string, actor: Actor): ApiToken {
      return store.tx(() => {
        const t = store.apiTokens.get(id);
        if (!t) throw new AppError('not_found', `no API token ${id}`);
        if (t.revokedAt !== null) throw new AppError('conflict', `${id} is revoked already`);
        const now = clock.now();
        store.apiTokens.revoke(id, now);
        store.audit.append({
          at: now,
          actor,
          action: 'token.revoke',
          targetType: 'token',
          targetId: id,
          details: { name: t.name },
        });
        const { hash: _h, ...rest } = t;
        return { ...rest, revokedAt: now };
      });
    },

    /**
     * Checks a presented bearer token; stamps its last use (at most once a minute, best effort).
     *
     * @throws AppError `unauthorized`, the same for every failure (malformed, unknown, expired,
     *   revoked), so nothing leaks
     */
    authenticate(presented: string): Principal {
      const denied = () =>
        new AppError(
          'unauthorized',
          'the API token is missing, malformed, unknown, expired or revoked',
          {},
          'send Authorization: Bearer bpls_…',
        );
      if (!TOKEN_SHAPE.test(presented)) throw denied();
      const h = hash(presented);
      const t = store.apiTokens.findByHash(h);
      // The index found the row by hash; compare again in constant time so the check itself never short-circuits on content.
      if (!t || !timingSafeEqual(t.hash, h)) throw denied();
      const now = clock.now();
      if (!tokenInForce(t, now)) throw denied();
      if (t.lastUsedAt === null || now - t.lastUsedAt >= TOUCH_INTERVAL_MS) {
        try {
          store.apiTokens.touch(t.id, now);
        } catch {
          // last_used_at is best effort: a busy database must not refuse a valid token.
        }
      }
      return { tokenId: t.id, role: t.role, tenantId: t.tenantId, actor: `token:${t.id}` };
    },
  };
}

export type ApiTokenService = ReturnType<typeof createApiTokenService>;

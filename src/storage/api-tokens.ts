import type { Db } from './db.ts';
import type { ApiToken, Role } from '../domain/types.ts';
import type { ApiTokenRepo, StoredApiToken } from '../domain/store.ts';

interface Row {
  id: string;
  name: string;
  role: Role;
  tenant_id: string | null;
  token_hash: Buffer;
  prefix: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

function fromRow(r: Row): StoredApiToken {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    tenantId: r.tenant_id,
    prefix: r.prefix,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
    hash: r.token_hash,
  };
}

/** All SQL about API tokens. Only keyed hashes of tokens are stored. */
export function createApiTokenRepo(db: Db): ApiTokenRepo {
  const insert =
    db.prepare(`INSERT INTO api_tokens (id, name, role, tenant_id, token_hash, prefix, created_at, expires_at)
    VALUES (@id, @name, @role, @tenant_id, @token_hash, @prefix, @created_at, @expires_at)`);
  const byHash = db.prepare<[Buffer], Row>('SELECT * FROM api_tokens WHERE token_hash = ?');
  const byId = db.prepare<[string], Row>('SELECT * FROM api_tokens WHERE id = ?');
  const all = db.prepare<[], Row>('SELECT * FROM api_tokens ORDER BY created_at, id');
  const touch = db.prepare<[number, string]>('UPDATE api_tokens SET last_used_at = ? WHERE id = ?');
  const revoke = db.prepare<[number, string]>(
    'UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL',
  );

  return {
    insert(t: ApiToken, hash: Buffer): void {
      insert.run({
        id: t.id,
        name: t.name,
        role: t.role,
        tenant_id: t.tenantId,
        token_hash: hash,
        prefix: t.prefix,
        created_at: t.createdAt,
        expires_at: t.expiresAt,
      });
    },
    findByHash(hash: Buffer) {
      const r = byHash.get(hash);
      return r && fromRow(r);
    },
    get(id: string) {
      const r = byId.get(id);
      return r && fromRow(r);
    },
    list() {
      return all.all().map(fromRow);
    },
    touch(id: string, at: number): void {
      touch.run(at, id);
    },
    revoke(id: string, at: number): boolean {
      return revoke.run(at, id).changes === 1;
    },
  };
}

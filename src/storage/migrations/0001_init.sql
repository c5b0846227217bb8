-- The first schema. Times are integer milliseconds since the Unix epoch, always from the
-- injected clock (never CURRENT_TIMESTAMP).

CREATE TABLE server_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE entitlements (
  seq          INTEGER PRIMARY KEY,           -- cursor order
  id           TEXT NOT NULL UNIQUE,          -- ent_…
  tenant_id    TEXT NOT NULL,
  product_id   TEXT NOT NULL,
  policy_json  TEXT NOT NULL,                 -- normalised policy as stored
  policy_type  TEXT NOT NULL CHECK (policy_type IN ('per_user', 'per_machine', 'concurrent', 'feature_based')),
  max_seats    INTEGER,                       -- NULL for feature_based
  grace_days   INTEGER NOT NULL,
  starts_at    INTEGER NOT NULL,
  ends_at      INTEGER NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
  source       TEXT NOT NULL CHECK (source IN ('manual', 'bundle')),
  external_id  TEXT UNIQUE,
  rev          INTEGER,                       -- bundle revision, NULL for manual
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  CHECK (ends_at > starts_at)
) STRICT;

-- Lease candidates come out in the grant rule's order (end of term, then age) without a sort.
CREATE INDEX entitlements_tenant_product ON entitlements (tenant_id, product_id, ends_at);
CREATE INDEX entitlements_product ON entitlements (product_id, ends_at);

CREATE TABLE api_tokens (
  id            TEXT PRIMARY KEY,             -- tok_…
  name          TEXT NOT NULL,
  role          TEXT NOT NULL,
  tenant_id     TEXT,                         -- set for tenant-scoped tokens
  token_hash    BLOB NOT NULL UNIQUE,         -- HMAC-SHA256 keyed by the server key; never the token
  prefix        TEXT NOT NULL,                -- first characters, to recognise a token in a list
  created_at    INTEGER NOT NULL,
  expires_at    INTEGER,
  last_used_at  INTEGER,
  revoked_at    INTEGER
) STRICT;

-- Append-only and hash-chained: hash = sha256(prev_hash ‖ canonical row).
CREATE TABLE audit_log (
  seq          INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,
  actor        TEXT NOT NULL,
  action       TEXT NOT NULL,
  target_type  TEXT,
  target_id    TEXT,
  details      TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
) STRICT;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

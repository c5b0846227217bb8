-- BPSYNC/1 bookkeeping: the vendor bundles applied, the exports made, and the permanent
-- revocations. Times are integer milliseconds from the injected clock.

-- One row per applied import bundle (vendor -> server); the highest seq is "the last import".
CREATE TABLE sync_imports (
  seq              INTEGER PRIMARY KEY,
  manifest_sha256  TEXT NOT NULL,               -- sha256 hex of the manifest token text
  iss              TEXT NOT NULL,
  kid              TEXT NOT NULL,               -- the vendor key that signed it
  iat              INTEGER NOT NULL,
  exp              INTEGER NOT NULL,
  ack              INTEGER,                     -- the last export the vendor had seen
  records          INTEGER NOT NULL,
  imported_at      INTEGER NOT NULL,
  actor            TEXT NOT NULL
) STRICT;

-- One row per export bundle (server -> vendor); each export covers what happened since the last.
CREATE TABLE sync_exports (
  seq              INTEGER PRIMARY KEY,
  manifest_sha256  TEXT NOT NULL,
  created_at       INTEGER NOT NULL,            -- the export's iat and the end of its period
  period_start     INTEGER NOT NULL,
  audit_seq        INTEGER NOT NULL,            -- the audit head the export carried
  audit_hash       TEXT NOT NULL,
  event_seq        INTEGER NOT NULL,            -- the last lease event counted
  clock_seq        INTEGER NOT NULL,            -- the last clock event carried
  records          INTEGER NOT NULL,
  file             TEXT                         -- where the CLI wrote it (NULL over HTTP)
) STRICT;

-- Revocation by bundle is permanent: an id listed here never becomes usable again, even when a
-- later bundle lists it as an entitlement.
CREATE TABLE sync_revocations (
  entitlement_id   TEXT PRIMARY KEY,
  seq              INTEGER NOT NULL,            -- the import that revoked it
  revoked_at       INTEGER NOT NULL
) STRICT;

CREATE TRIGGER sync_revocations_no_update BEFORE UPDATE ON sync_revocations
BEGIN SELECT RAISE(ABORT, 'sync_revocations is append-only: revocations are permanent'); END;
CREATE TRIGGER sync_revocations_no_delete BEFORE DELETE ON sync_revocations
BEGIN SELECT RAISE(ABORT, 'sync_revocations is append-only: revocations are permanent'); END;

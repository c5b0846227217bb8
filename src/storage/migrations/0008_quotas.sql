-- Quotas (policy_json.quotas, e.g. {"dashboards": 5}): a unit of a quota is consumed by recording
-- an installation and returned by deleting it. The count of an entitlement's rows for a quota is
-- its use; the install counts and inserts in one IMMEDIATE transaction, so the limit is exact.
-- Lowering a limit never deletes a row (remaining shows 0 until enough are removed).
CREATE TABLE installations (
  seq              INTEGER PRIMARY KEY,         -- list order (the cursor)
  id               TEXT NOT NULL UNIQUE,        -- inst_…
  entitlement_id   TEXT NOT NULL REFERENCES entitlements (id),
  quota            TEXT NOT NULL,               -- a name in policy_json.quotas
  name             TEXT NOT NULL,
  metadata         TEXT NOT NULL,               -- canonical JSON object
  version          TEXT,
  principal_id     TEXT,                        -- who installed (a subject id), when known
  idempotency_key  TEXT,                        -- the client's key, unique per entitlement
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
) STRICT;

-- Counting an entitlement's use of a quota reads this index only.
CREATE INDEX installations_by_quota ON installations (entitlement_id, quota);
-- A retried install finds the first one by its key; two at once cannot both insert.
CREATE UNIQUE INDEX installations_by_key ON installations (entitlement_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Each install (+1) and removal (-1), for the daily usage report (usage.csv): the units in use at
-- the end of a past day are today's count less the changes since.
CREATE TABLE installation_events (
  seq              INTEGER PRIMARY KEY,
  at               INTEGER NOT NULL,
  entitlement_id   TEXT NOT NULL,
  quota            TEXT NOT NULL,
  delta            INTEGER NOT NULL CHECK (delta IN (1, -1))
) STRICT;

CREATE INDEX installation_events_entitlement_at ON installation_events (entitlement_id, at);

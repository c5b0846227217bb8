-- Leases, named seats and the lease event log (usage reports read it).

-- Maintained counters, so a grant never counts leases (O(1) at any size).
ALTER TABLE entitlements ADD COLUMN active_leases INTEGER NOT NULL DEFAULT 0;   -- state='active' rows, expired or not
ALTER TABLE entitlements ADD COLUMN seats_assigned INTEGER NOT NULL DEFAULT 0;

CREATE TABLE seats (
  id              TEXT PRIMARY KEY,            -- seat_…
  entitlement_id  TEXT NOT NULL REFERENCES entitlements (id),
  subject_type    TEXT NOT NULL,
  subject_id      TEXT NOT NULL,
  assigned_at     INTEGER NOT NULL,
  assigned_by     TEXT NOT NULL,               -- 'auto' (taken by a first lease) or the admin actor
  UNIQUE (entitlement_id, subject_type, subject_id)
) STRICT;

CREATE TABLE leases (
  seq             INTEGER PRIMARY KEY,         -- list order
  id              TEXT NOT NULL UNIQUE,        -- lease_… (time prefix + 128 random bits: the proof of possession)
  entitlement_id  TEXT NOT NULL REFERENCES entitlements (id),
  subject_type    TEXT NOT NULL,
  subject_id      TEXT NOT NULL,
  features        TEXT NOT NULL,               -- JSON array
  granted_at      INTEGER NOT NULL,
  renewed_at      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('active', 'released', 'revoked', 'expired')),
  ended_at        INTEGER
) STRICT;

-- A subject's leases on an entitlement: its active one (asking again refreshes it) and its history
-- (status pages). One index, not a partial unique one plus a history index: each grant writes one
-- random index page, not two. "One active lease per subject and entitlement" is kept by the grant,
-- which looks before it inserts inside the same IMMEDIATE transaction.
CREATE INDEX leases_by_subject ON leases (entitlement_id, subject_type, subject_id, state);
-- Reclaiming and sweeping expired leases walks only what has expired.
CREATE INDEX leases_active_expiry ON leases (entitlement_id, expires_at) WHERE state = 'active';
CREATE INDEX leases_expiry ON leases (expires_at) WHERE state = 'active';

CREATE TABLE lease_events (
  seq             INTEGER PRIMARY KEY,
  at              INTEGER NOT NULL,
  kind            TEXT NOT NULL CHECK (kind IN ('grant', 'renew', 'release', 'expire', 'revoke', 'deny')),
  entitlement_id  TEXT,
  lease_id        TEXT,
  subject_type    TEXT,
  subject_id      TEXT,
  active_after    INTEGER,                     -- the entitlement's active leases after the event (peaks)
  reason          TEXT                         -- deny: the error code
) STRICT;

CREATE INDEX lease_events_entitlement_at ON lease_events (entitlement_id, at);

-- Subjects are compared by a canonical key (docs/design.md "Subjects", src/subjects.ts): NFC, then Unicode
-- full case folding, then NFC. Before this migration `alice` and `Alice` were two subjects, each
-- able to take a seat. SQLite has no NFC: bp_subject_key() is the JS function, registered on the
-- connection that migrates (src/storage/db.ts). For printable ASCII, SQLite's lower() gives the
-- same key, so most rows never call into JS.
--
-- Ids are kept as first seen for display (subject_id); every lookup, uniqueness rule and count uses
-- subject_key. Collisions (several seats of one entitlement whose ids are now one subject) keep the
-- oldest seat (by assigned_at, then seat id) and move the others, unchanged, to seats_merged with
-- the id of the seat they merged into. Nothing is deleted. Several active leases of one subject
-- are left to run (a running application is never cut); the grant path refreshes one of them, the
-- others end when they are released or run out. The JS step after this file (subject-keys.ts)
-- writes an audit row and a note listing every collision.

-- Seats that became duplicates of an older seat of the same subject: kept for the record.
CREATE TABLE seats_merged (
  id              TEXT PRIMARY KEY,            -- seat_… as it was
  entitlement_id  TEXT NOT NULL,
  subject_type    TEXT NOT NULL,
  subject_id      TEXT NOT NULL,
  subject_key     TEXT NOT NULL,
  assigned_at     INTEGER NOT NULL,
  assigned_by     TEXT NOT NULL,
  merged_into     TEXT NOT NULL                -- the seat that stays (seats.id)
) STRICT;

CREATE TEMP TABLE subject_keys_seats AS
  SELECT id, entitlement_id, subject_type, subject_id,
         CASE WHEN subject_id GLOB '*[^ -~]*' THEN bp_subject_key(subject_id) ELSE lower(subject_id) END AS subject_key,
         assigned_at, assigned_by
  FROM seats;

WITH ranked AS (
  SELECT s.*,
         first_value(id) OVER w AS keeper,
         row_number() OVER w AS n
  FROM temp.subject_keys_seats s
  WINDOW w AS (PARTITION BY entitlement_id, subject_type, subject_key ORDER BY assigned_at, id)
)
INSERT INTO seats_merged (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by, merged_into)
  SELECT id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by, keeper FROM ranked WHERE n > 1;

-- The seats table again, unique by subject key instead of subject id (the old UNIQUE would cost
-- every seat insert a second index for nothing).
CREATE TABLE seats_v7 (
  id              TEXT PRIMARY KEY,            -- seat_…
  entitlement_id  TEXT NOT NULL REFERENCES entitlements (id),
  subject_type    TEXT NOT NULL,
  subject_id      TEXT NOT NULL,               -- as first seen, for display
  subject_key     TEXT NOT NULL,               -- canonical: what lookups and the uniqueness use
  assigned_at     INTEGER NOT NULL,
  assigned_by     TEXT NOT NULL,               -- 'auto' (taken by a first lease) or the admin actor
  UNIQUE (entitlement_id, subject_type, subject_key)
) STRICT;

INSERT INTO seats_v7 (id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by)
  SELECT id, entitlement_id, subject_type, subject_id, subject_key, assigned_at, assigned_by
  FROM temp.subject_keys_seats WHERE id NOT IN (SELECT id FROM seats_merged);

DROP TABLE seats;
ALTER TABLE seats_v7 RENAME TO seats;
DROP TABLE temp.subject_keys_seats;

-- A merged seat no longer counts.
UPDATE entitlement_counters
  SET seats_assigned = seats_assigned - (SELECT count(*) FROM seats_merged m WHERE m.entitlement_id = entitlement_counters.entitlement_id)
  WHERE entitlement_id IN (SELECT entitlement_id FROM seats_merged);

-- Leases: the key beside the id as first seen; the subject index moves to the key.
ALTER TABLE leases ADD COLUMN subject_key TEXT NOT NULL DEFAULT '';
UPDATE leases SET subject_key = CASE WHEN subject_id GLOB '*[^ -~]*' THEN bp_subject_key(subject_id) ELSE lower(subject_id) END;
DROP INDEX leases_by_subject;
CREATE INDEX leases_by_subject ON leases (entitlement_id, subject_type, subject_key, state);

-- The lease event log is only counted (usage: unique subjects, active seats): it keeps the key,
-- so counts are canonical and cost nothing extra.
UPDATE lease_events
  SET subject_id = CASE WHEN subject_id GLOB '*[^ -~]*' THEN bp_subject_key(subject_id) ELSE lower(subject_id) END
  WHERE subject_id GLOB '*[^ -~]*' OR subject_id GLOB '*[A-Z]*';

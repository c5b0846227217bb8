-- Floating extras (README "Floating extras"): overdraft, borrowing and shared instances.

-- A lease granted past max_seats (within policy overdraft_seats), or borrowed for offline use
-- (its expires_at is the end of the borrow). Flags fixed at grant; 0 on every plain lease.
ALTER TABLE leases ADD COLUMN overdraft INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN borrowed INTEGER NOT NULL DEFAULT 0;
-- A named seat assigned past max_seats: its holder's leases are overdraft leases.
ALTER TABLE seats ADD COLUMN overdraft INTEGER NOT NULL DEFAULT 0;
-- Borrowed leases with state 'active' (expired or not), so the borrow cap is one counter read.
ALTER TABLE entitlement_counters ADD COLUMN borrowed_leases INTEGER NOT NULL DEFAULT 0;
-- grant and renew events: 1 overdraft, 2 borrowed (bits); NULL on plain ones. Usage and the CSV
-- count overdraft grants from it (the vendor's true-up).
ALTER TABLE lease_events ADD COLUMN flags INTEGER;

-- The instances (processes, workstations) of one subject sharing its lease and seat. The lease
-- ends when its last instance is released or stops renewing.
CREATE TABLE lease_instances (
  lease_id     TEXT NOT NULL,
  instance_id  TEXT NOT NULL,
  expires_at   INTEGER NOT NULL,
  PRIMARY KEY (lease_id, instance_id)
) STRICT, WITHOUT ROWID;

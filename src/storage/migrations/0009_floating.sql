-- Floating extras (README "Floating extras"): overdraft, borrowing and shared instances.

-- A lease granted past max_seats (within policy overdraft_seats), or borrowed for offline use
-- (its expires_at is the end of the borrow). Flags fixed at grant; 0 on every plain lease.
ALTER TABLE leases ADD COLUMN overdraft INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN borrowed INTEGER NOT NULL DEFAULT 0;
-- A named seat assigned past max_seats: its holder's leases are overdraft leases.
ALTER TABLE seats ADD COLUMN overdraft INTEGER NOT NULL DEFAULT 0;
-- Borrowed leases in force, counted for max_borrowed_seats on a borrow request (derived, so no
-- counter can drift when a lease ends by any path); plain leases never enter this index.
CREATE INDEX leases_borrowed ON leases (entitlement_id, expires_at) WHERE state = 'active' AND borrowed = 1;
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
-- The sweep forgets instances whose time has passed: a range, not a table scan.
CREATE INDEX lease_instances_expiry ON lease_instances (expires_at);

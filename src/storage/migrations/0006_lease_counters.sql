-- The lease and seat counters move out of the entitlement row into a table of their own. Every
-- grant bumps one; an entitlement row (policy JSON and all) fits about seven to a page, a counter
-- row about fifty, so a group commit of grants spread over many entitlements rewrites a couple of
-- counter pages instead of one entitlement page per entitlement. A missing row means zero.
CREATE TABLE entitlement_counters (
  entitlement_id  TEXT PRIMARY KEY REFERENCES entitlements (id),
  active_leases   INTEGER NOT NULL DEFAULT 0,   -- state='active' lease rows, expired or not
  seats_assigned  INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

INSERT INTO entitlement_counters (entitlement_id, active_leases, seats_assigned)
  SELECT id, active_leases, seats_assigned FROM entitlements WHERE active_leases <> 0 OR seats_assigned <> 0;

ALTER TABLE entitlements DROP COLUMN active_leases;
ALTER TABLE entitlements DROP COLUMN seats_assigned;

-- A value that changes with every change to an entitlement's terms, from any connection, so the
-- grant path may keep the tenant's candidates in memory and still never serve stale terms. It is a
-- random number, not a counter, so a rolled-back change can never be mistaken for a later one.
-- The seat and lease counters are not terms: they do not change it.
CREATE TABLE entitlement_epoch (value INTEGER NOT NULL) STRICT;
INSERT INTO entitlement_epoch (value) VALUES (random());

CREATE TRIGGER entitlement_epoch_insert AFTER INSERT ON entitlements
BEGIN UPDATE entitlement_epoch SET value = random(); END;

CREATE TRIGGER entitlement_epoch_update AFTER UPDATE OF
  id, tenant_id, product_id, policy_json, policy_type, max_seats, grace_days, starts_at, ends_at, status, source, external_id, rev
  ON entitlements
BEGIN UPDATE entitlement_epoch SET value = random(); END;

CREATE TRIGGER entitlement_epoch_delete AFTER DELETE ON entitlements
BEGIN UPDATE entitlement_epoch SET value = random(); END;

-- One expiry index instead of two. `leases_active_expiry (entitlement_id, expires_at)` served the
-- reclaim of an entitlement's expired leases and the count of its leases in force; every grant and
-- renewal rewrote one of its pages per entitlement (about 1.6 pages a grant, a third of a grant's
-- writes). Both questions are now asked of `leases_expiry (expires_at)`, which only holds active
-- rows and whose expired part is only what the sweep has not marked yet, plus the counters.
DROP INDEX leases_active_expiry;

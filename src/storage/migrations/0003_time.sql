-- Clock events: the server's time high-water mark, each time the clock was caught behind it, and
-- each recovery. Exports carry them to the vendor.
CREATE TABLE clock_events (
  seq      INTEGER PRIMARY KEY,
  at       INTEGER NOT NULL,            -- the wall clock when it happened
  kind     TEXT NOT NULL CHECK (kind IN ('suspect', 'recovered', 'vouched')),
  hwm      INTEGER NOT NULL,            -- the high-water mark then
  details  TEXT NOT NULL
) STRICT;

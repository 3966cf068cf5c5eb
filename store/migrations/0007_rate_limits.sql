-- Rate limits that hold across every replica sharing this database: one
-- row per limited key (such as "checkout:<user id>") holding the GCRA's
-- theoretical arrival time. A key whose tat has passed is as good as
-- absent, so rows never need cleaning for correctness.
CREATE TABLE rate_limits (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL
);

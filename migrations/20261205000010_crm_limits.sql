-- Soho CRM's limits (CONTRACT.md 4, src/crm/limits.rs): the org's rolling 24 h credit budget is
-- counted here, one credit per call (a call carries up to 100 records), in one row per minute so
-- the count stays a sum over at most 1,440 rows; rows older than a day are deleted as calls go.
CREATE TABLE crm_credits
(
    minute  timestamptz PRIMARY KEY,
    calls   integer NOT NULL,
    records integer NOT NULL
);

-- A pause every server honours: the CRM answered LIMIT_REACHED (its budget, which other apps
-- share, is spent), so no server calls it before `until`. One row at most.
CREATE TABLE crm_pause
(
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    until     timestamptz NOT NULL,
    reason    text        NOT NULL
);

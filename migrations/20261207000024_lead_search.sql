-- What a lead search (`GET /leads?q=`) matches moves from the lead list to a table of its own.
-- A lead's names, email and company never change after its submission, so a replay writes these
-- rows as it reads the log and builds their trigram index while the leads' own rows load, where
-- it used to wait for the lead list to be complete (the index is the longest single build).
CREATE TABLE lead_search
(
    lead_id     uuid PRIMARY KEY,
    -- The names, email and company, lower-cased.
    search_text text NOT NULL
);

INSERT INTO lead_search (lead_id, search_text) SELECT lead_id, search_text FROM leads;
CREATE INDEX lead_search_text ON lead_search USING gin (search_text gin_trgm_ops);

DROP INDEX leads_search;
ALTER TABLE leads DROP COLUMN search_text;

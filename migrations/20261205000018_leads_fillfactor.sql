-- Room on each page of `leads` for the row's next version: a lead's CRM sync (its Soho id, sync
-- state, time) changes no indexed column, so with room on the page the update is a HOT update
-- and none of the table's nine indexes (one of them a trigram GIN) is written again. Applies to
-- pages written from now on.
ALTER TABLE leads SET (fillfactor = 80);

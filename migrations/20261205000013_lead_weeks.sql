-- The dashboard's weekly series (issue 15, 6): leads submitted, and of those converted, by the
-- week they were submitted (Monday, UTC), per partner and per submitting user. Kept by the leads
-- projection with the counters (lead_counts), so the chart is exact for any number of leads
-- (it was drawn from the newest 200).
CREATE TABLE lead_weeks
(
    scope     text   NOT NULL, -- partner | user
    scope_id  uuid   NOT NULL,
    week      date   NOT NULL,
    submitted bigint NOT NULL,
    converted bigint NOT NULL,
    PRIMARY KEY (scope, scope_id, week)
);

INSERT INTO lead_weeks (scope, scope_id, week, submitted, converted)
SELECT s.scope, s.scope_id, date_trunc('week', l.created_at AT TIME ZONE 'UTC')::date,
       count(*), count(*) FILTER (WHERE l.status = 'converted')
FROM leads l
CROSS JOIN LATERAL (VALUES ('partner', l.partner_id), ('user', l.submitted_by_user)) AS s(scope, scope_id)
WHERE s.scope_id IS NOT NULL
GROUP BY 1, 2, 3;

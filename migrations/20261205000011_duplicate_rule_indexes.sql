-- The duplicate rules look a person up by email or phone within a partner (the lead writer,
-- src/leads/writer/batch.rs). With the partner in the index, the lookup is one index probe
-- whatever the statistics say: with `(lower(email), created_at)` alone, stale statistics on an
-- ever-growing `created_at` made the planner prefer `leads_by_partner` and filter every lead of
-- the partner (8 ms a batch at 20,000 leads, under the writer's lock).
DROP INDEX leads_by_email;
DROP INDEX leads_by_phone;
CREATE INDEX leads_by_email ON leads (lower(email), partner_id, created_at) WHERE email IS NOT NULL;
CREATE INDEX leads_by_phone ON leads (phone_key, partner_id, created_at) WHERE phone_key IS NOT NULL;

-- Lead read models kept by projections (projections/src/leads.rs): the lead list, each lead's
-- status history, and the dashboard counters. Rebuildable from the log with `replay`.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE leads
(
    lead_id           uuid PRIMARY KEY,
    partner_id        uuid        NOT NULL,
    -- The user who submitted it; NULL for the public form.
    submitted_by_user uuid,
    first_name        text,
    last_name         text        NOT NULL,
    email             text,
    phone             text,
    -- Digits only (with a leading + kept), for matching the same person across submissions.
    phone_key         text,
    company           text,
    notes             text,
    metadata          jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL,
    crm_status        text        NOT NULL,
    soho_lead_id      text,
    sync_state        text        NOT NULL,
    sync_error        text,
    channel_conflict  boolean     NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    -- What `q` searches: names, email and company, lower-cased.
    search_text       text        NOT NULL
);

-- Newest first, keyset-paginated on (created_at, lead_id), within a partner or a sub-account,
-- with or without a status filter.
CREATE INDEX leads_by_partner ON leads (partner_id, created_at DESC, lead_id DESC);
CREATE INDEX leads_by_partner_status ON leads (partner_id, status, created_at DESC, lead_id DESC);
CREATE INDEX leads_by_submitter ON leads (submitted_by_user, created_at DESC, lead_id DESC);
CREATE INDEX leads_by_submitter_status ON leads (submitted_by_user, status, created_at DESC, lead_id DESC);
CREATE INDEX leads_search ON leads USING gin (search_text gin_trgm_ops);
-- Duplicate detection: the same person by email or phone, recently.
CREATE INDEX leads_by_email ON leads (lower(email), created_at) WHERE email IS NOT NULL;
CREATE INDEX leads_by_phone ON leads (phone_key, created_at) WHERE phone_key IS NOT NULL;

CREATE TABLE lead_status_history
(
    lead_id     uuid        NOT NULL,
    sequence    bigint      NOT NULL, -- the event's sequence in the lead's stream
    old_status  text        NOT NULL,
    new_status  text        NOT NULL,
    crm_status  text        NOT NULL,
    source      text        NOT NULL, -- portal | crm
    actor_type  text        NOT NULL,
    actor_id    text,
    note        text,
    -- Whether the change moved the status (false: older than the latest, kept for the record).
    applied     boolean     NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (lead_id, sequence)
);

-- Dashboard counters: leads by status, per partner and per submitting user, kept by the
-- projection so that reading them costs the same at ten leads or ten million.
CREATE TABLE lead_counts
(
    scope    text   NOT NULL, -- partner | user
    scope_id uuid   NOT NULL,
    status   text   NOT NULL,
    leads    bigint NOT NULL,
    PRIMARY KEY (scope, scope_id, status)
);

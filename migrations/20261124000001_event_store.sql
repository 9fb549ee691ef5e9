-- The event log: postgres-es's `events` table (its statements name their columns, so the extra
-- columns below are invisible to it), plus what catch-up readers need to follow the log without
-- gaps (DESIGN.md 2): a global position, the writing transaction's id, and when it was recorded.
CREATE TABLE events
(
    aggregate_type  text                          NOT NULL,
    aggregate_id    text                          NOT NULL,
    sequence        bigint CHECK (sequence >= 0)  NOT NULL,
    event_type      text                          NOT NULL,
    event_version   text                          NOT NULL,
    payload         jsonb                         NOT NULL,
    metadata        jsonb                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The order readers follow: by committing transaction, then by position inside it.
CREATE UNIQUE INDEX events_log_order ON events (tx_id, global_position);

-- Wakes catch-up readers as soon as a transaction that appended events commits.
CREATE FUNCTION events_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('events_appended', '');
    RETURN NULL;
END $$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_appended();

-- Where each subscriber (projection, process manager) has got to in the log. Written in the same
-- transaction as the subscriber's own writes, so every event is applied exactly once.
CREATE TABLE subscriber_checkpoints
(
    subscriber      text PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT '0',
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Set-based rules (DESIGN.md 5), kept in the transaction that appends the deciding event, so two
-- concurrent commands can never both win. A clash is raised with SQLSTATE 'SH409' and the rule's
-- name as the constraint, which the server maps to 409 (postgres-es would read a plain unique
-- violation as an optimistic-lock conflict and retry it).
CREATE TABLE partner_soho_ids
(
    soho_partner_id text PRIMARY KEY,
    partner_id      uuid NOT NULL UNIQUE
);

CREATE TABLE user_emails
(
    email   text PRIMARY KEY, -- lower-cased
    user_id uuid NOT NULL UNIQUE
);

CREATE TABLE lead_soho_ids
(
    soho_lead_id text PRIMARY KEY,
    lead_id      uuid NOT NULL UNIQUE
);

CREATE FUNCTION events_keep_set_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.aggregate_type = 'Partner' AND NEW.event_type = 'PartnerRegistered' THEN
        BEGIN
            INSERT INTO partner_soho_ids (soho_partner_id, partner_id)
            VALUES (NEW.payload -> 'PartnerRegistered' ->> 'sohoPartnerId', NEW.aggregate_id::uuid);
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'a partner with this Soho CRM id exists already'
                USING ERRCODE = 'SH409', CONSTRAINT = 'partner_soho_id_unique';
        END;
    ELSIF NEW.aggregate_type = 'User' AND NEW.event_type = 'UserInvited' THEN
        BEGIN
            INSERT INTO user_emails (email, user_id)
            VALUES (lower(NEW.payload -> 'UserInvited' ->> 'email'), NEW.aggregate_id::uuid);
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'a user with this email exists already'
                USING ERRCODE = 'SH409', CONSTRAINT = 'user_email_unique';
        END;
    ELSIF NEW.aggregate_type = 'Lead' AND NEW.event_type = 'LeadSyncedToCrm' THEN
        -- The same lead synced again with the same CRM id is fine; another lead with it is not.
        -- A lead that got a new CRM id (its record was recreated) moves to it.
        DELETE FROM lead_soho_ids
        WHERE lead_id = NEW.aggregate_id::uuid
          AND soho_lead_id <> NEW.payload -> 'LeadSyncedToCrm' ->> 'sohoLeadId';
        INSERT INTO lead_soho_ids (soho_lead_id, lead_id)
        VALUES (NEW.payload -> 'LeadSyncedToCrm' ->> 'sohoLeadId', NEW.aggregate_id::uuid)
        ON CONFLICT (soho_lead_id) DO NOTHING;
        IF NOT EXISTS (SELECT 1 FROM lead_soho_ids
                       WHERE soho_lead_id = NEW.payload -> 'LeadSyncedToCrm' ->> 'sohoLeadId'
                         AND lead_id = NEW.aggregate_id::uuid) THEN
            RAISE EXCEPTION 'another lead has this Soho CRM id'
                USING ERRCODE = 'SH409', CONSTRAINT = 'lead_soho_id_unique';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_set_rules
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('PartnerRegistered', 'UserInvited', 'LeadSyncedToCrm'))
    EXECUTE FUNCTION events_keep_set_rules();

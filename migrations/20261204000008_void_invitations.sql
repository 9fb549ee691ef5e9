-- Soho CRM is the authority on who owns a partner: its approval may claim an email that only an
-- unregistered sub-account invitation holds (another partner's admin could otherwise squat on
-- it). The invitation is voided (`InvitationVoided`), which frees the email here.
CREATE OR REPLACE FUNCTION events_keep_set_rules() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ELSIF NEW.aggregate_type = 'User' AND NEW.event_type = 'InvitationVoided' THEN
        DELETE FROM user_emails WHERE user_id = NEW.aggregate_id::uuid;
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

DROP TRIGGER events_set_rules ON events;
CREATE TRIGGER events_set_rules
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('PartnerRegistered', 'UserInvited', 'InvitationVoided', 'LeadSyncedToCrm'))
    EXECUTE FUNCTION events_keep_set_rules();

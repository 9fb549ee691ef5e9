-- One lead per Soho CRM id is now kept by the lead writer (src/leads/writer), which checks it
-- before it decides, so a command that breaks it fails alone, and writes `lead_soho_ids` in its
-- transaction. The trigger keeps the Partner and User rules (their commands are rare, and go
-- through cqrs-es, which cannot write a lookup table itself).
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
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER events_set_rules ON events;
CREATE TRIGGER events_set_rules
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('PartnerRegistered', 'UserInvited', 'InvitationVoided'))
    EXECUTE FUNCTION events_keep_set_rules();

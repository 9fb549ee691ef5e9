-- One partner per Soho CRM id and one user per email are kept by the Partner and User commands'
-- event store (src/commands/rules.rs): it writes `partner_soho_ids` and `user_emails` in the
-- transaction that appends the claiming event, from the events as the aggregates' types, and a
-- broken rule is the unique key's own violation. The trigger that read the payloads' JSON and
-- raised a SQLSTATE of its own goes; the keys take the rules' names, which the commands report.
DROP TRIGGER events_set_rules ON events;
DROP FUNCTION events_keep_set_rules();

ALTER TABLE partner_soho_ids RENAME CONSTRAINT partner_soho_ids_pkey TO partner_soho_id_unique;
ALTER TABLE user_emails RENAME CONSTRAINT user_emails_pkey TO user_email_unique;

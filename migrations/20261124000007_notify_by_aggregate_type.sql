-- Readers are woken per aggregate type: the notification names each type the statement
-- appended, so a subscriber that only handles leads is not woken by a user's event (and the
-- other way round). Readers treat an empty payload as "wake everyone".
CREATE OR REPLACE FUNCTION events_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('events_appended', aggregate_type)
    FROM (SELECT DISTINCT aggregate_type FROM appended) AS types;
    RETURN NULL;
END $$;

DROP TRIGGER events_appended ON events;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_appended();

-- The live-update feed (CONTRACT.md 6): one row per message, written by the leads projection in
-- the transaction that updates the lead read models, so a client that reads on a push sees the
-- new state. `position` only grows in the order messages are written (one projection batch at a
-- time), which is what `resume` and `/leads/changes?after=` count on.
CREATE TABLE live_feed
(
    position          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text        NOT NULL, -- lead.created | lead.status_changed | lead.synced
    lead_id           uuid        NOT NULL,
    partner_id        uuid        NOT NULL,
    submitted_by_user uuid,
    data              jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX live_feed_by_partner ON live_feed (partner_id, position);
CREATE INDEX live_feed_by_submitter ON live_feed (submitted_by_user, position);

-- Wakes every server's live hub when messages are written (delivered at commit).
CREATE FUNCTION live_feed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('live_feed', '');
    RETURN NULL;
END $$;

CREATE TRIGGER live_feed_written
    AFTER INSERT ON live_feed
    FOR EACH STATEMENT EXECUTE FUNCTION live_feed_notify();

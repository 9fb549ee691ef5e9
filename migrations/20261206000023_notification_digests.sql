-- The daily digest: a user may choose one email a day instead of one per event. What it will
-- say is kept here until it is sent (written with the batch of events it comes from, so it is
-- neither lost nor doubled), and when each user last got one.
ALTER TABLE notification_settings DROP CONSTRAINT notification_settings_mode_check;
ALTER TABLE notification_settings ADD CONSTRAINT notification_settings_mode_check
    CHECK (mode IN ('instant', 'daily', 'off'));

CREATE TABLE notification_digest_items
(
    item_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid        NOT NULL,
    lead_id    uuid        NOT NULL,
    line       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_digest_items_by_user ON notification_digest_items (user_id, item_id);

CREATE TABLE notification_digests
(
    user_id uuid PRIMARY KEY,
    sent_at timestamptz NOT NULL
);

-- Lead notifications by email. Each user's choice (no row: instant); and each notification sent,
-- so a batch retried after a failure does not send again what already went out.
CREATE TABLE notification_settings
(
    user_id uuid PRIMARY KEY,
    mode    text NOT NULL CHECK (mode IN ('instant', 'off'))
);

CREATE TABLE notifications_sent
(
    message_id text PRIMARY KEY,
    sent_at    timestamptz NOT NULL DEFAULT now()
);

-- The sender starts at the log's head: the leads' past is history, not news to email.
INSERT INTO subscriber_checkpoints (subscriber, tx_id, global_position)
SELECT 'lead_notifications', e.tx_id, e.global_position
FROM events e ORDER BY e.tx_id DESC, e.global_position DESC LIMIT 1
ON CONFLICT (subscriber) DO NOTHING;

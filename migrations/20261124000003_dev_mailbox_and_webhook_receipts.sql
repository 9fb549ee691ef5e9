-- Emails kept instead of sent when no SMTP server is configured (dev mode).
CREATE TABLE dev_mailbox
(
    message_id text PRIMARY KEY,
    recipient  text        NOT NULL,
    subject    text        NOT NULL,
    text_body  text        NOT NULL,
    html_body  text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);

-- Soho CRM webhooks already processed, by their `webhook-id`, with the answer given: a retried
-- delivery gets the same answer and causes nothing new.
CREATE TABLE webhook_receipts
(
    webhook_id  text PRIMARY KEY,
    endpoint    text        NOT NULL,
    status_code integer     NOT NULL,
    response    jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- When the portal disables a failing endpoint, its partner's admins are emailed. The notice is
-- due in the same statement that disables the endpoint, and cleared once the mail server has it:
-- a crash in between sends it again (same message id), never loses it.
ALTER TABLE webhook_endpoints ADD COLUMN disabled_notice_due boolean NOT NULL DEFAULT false;
CREATE INDEX webhook_endpoints_notice_due ON webhook_endpoints (endpoint_id) WHERE disabled_notice_due;

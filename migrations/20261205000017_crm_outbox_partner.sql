-- The CRM workers share calls out fairly across partners: each task now carries its lead's
-- partner, so choosing the next batch no longer looks up a lead per ready task.
ALTER TABLE crm_outbox ADD COLUMN partner_id uuid;
UPDATE crm_outbox o SET partner_id = l.partner_id
FROM leads l WHERE l.lead_id = o.lead_id AND o.state <> 'done';

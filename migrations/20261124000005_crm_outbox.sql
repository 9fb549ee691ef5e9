-- Calls owed to Soho CRM, written by the `crm_outbox` subscriber as the log records leads and
-- portal status changes, and worked by the CRM sync workers (src/crm/worker.rs). A lead's tasks
-- run in order: a task is taken only when every earlier task of its lead is done.
CREATE TABLE crm_outbox
(
    task_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id         uuid        NOT NULL,
    kind            text        NOT NULL, -- upsert | status
    crm_status      text,                 -- for status tasks: the value to send
    state           text        NOT NULL DEFAULT 'pending', -- pending | done | failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz
);

CREATE INDEX crm_outbox_ready ON crm_outbox (next_attempt_at, task_id) WHERE state = 'pending';
CREATE INDEX crm_outbox_unfinished_by_lead ON crm_outbox (lead_id, task_id) WHERE state <> 'done';

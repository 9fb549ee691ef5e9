-- Outbound webhooks (contract 8): partners' endpoints, and the deliveries owed to them. The
-- fan-out follows the live feed (whose positions grow in commit order) from its checkpoint, so
-- every message is considered once; a delivery is sent from this table, so a crash loses none.
CREATE TABLE webhook_endpoints
(
    endpoint_id     uuid PRIMARY KEY,
    partner_id      uuid        NOT NULL,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    secret          text        NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_by_partner ON webhook_endpoints (partner_id) WHERE enabled;

CREATE TABLE webhook_deliveries
(
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid        NOT NULL,
    message_id      text        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending', -- pending | delivered | failed
    attempts        jsonb       NOT NULL DEFAULT '[]', -- [{at, status?, error?, ms}]
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, delivery_id DESC);

CREATE TABLE webhook_fanout
(
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);

-- Messages already in the feed are history, not news: the fan-out starts at the head.
INSERT INTO webhook_fanout (position) SELECT COALESCE(max(position), 0) FROM live_feed;

-- Partners' own systems (contract 8). API keys act as their partner; only a SHA-256 of each
-- key is kept, with the prefix shown in lists. A revoked key is refused from the next request
-- on, on every server (keys are looked up on each request, never cached).
CREATE TABLE api_keys
(
    key_id       uuid PRIMARY KEY,
    partner_id   uuid        NOT NULL,
    name         text        NOT NULL,
    prefix       text        NOT NULL,
    key_hash     text        NOT NULL UNIQUE,
    created_by   uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX api_keys_by_partner ON api_keys (partner_id, created_at);

-- `Idempotency-Key` on POST /leads: the first answer, kept 24 h for the caller that sent it.
-- `status` is null while the first request is being answered.
CREATE TABLE idempotent_requests
(
    caller          text        NOT NULL, -- user:<id> or key:<id>
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    status          smallint,
    answer          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, idempotency_key)
);

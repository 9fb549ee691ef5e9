-- Refresh credentials (POST /auth/refresh, contract 3): session state, not domain history, so a
-- plain table rather than events. Only a SHA-256 of each token is kept. Each login starts a
-- family; a refresh uses its token up and issues the next of the family. A used token presented
-- again means it was copied: the whole family is revoked (RFC 9700, 4.14.2).
CREATE TABLE refresh_tokens
(
    token_hash text PRIMARY KEY,
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

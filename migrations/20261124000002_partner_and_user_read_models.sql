-- Read models kept by projections (projections/src/partners.rs, users.rs). Rebuildable from the
-- log at any time with `soho-portal replay`; nothing else writes them.
CREATE TABLE partners
(
    partner_id      uuid PRIMARY KEY,
    soho_partner_id text        NOT NULL,
    name            text        NOT NULL,
    email           text        NOT NULL,
    tier            text,
    commission_rate double precision,
    status          text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE users
(
    user_id               uuid PRIMARY KEY,
    partner_id            uuid,
    email                 text        NOT NULL,
    name                  text,
    role                  text        NOT NULL,
    status                text        NOT NULL, -- invited | active | disabled
    registered            boolean     NOT NULL,
    password_hash         text,
    invitation_id         uuid,
    invitation_token_hash text,
    invitation_expires_at timestamptz,
    invitation_sent_at    timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_partner ON users (partner_id, created_at);
CREATE INDEX users_invitation_token ON users (invitation_token_hash) WHERE invitation_token_hash IS NOT NULL;

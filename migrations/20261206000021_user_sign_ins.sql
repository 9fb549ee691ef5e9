-- When each user last logged in with a password (the Team page shows it). Not a read model of
-- the log: a login is no business event, and a replay leaves this table alone.
CREATE TABLE user_sign_ins
(
    user_id      uuid PRIMARY KEY,
    signed_in_at timestamptz NOT NULL
);

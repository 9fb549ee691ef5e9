-- "Forgot your password?": the current reset link of each user, found by its token's hash.
-- (The token itself is never stored: it is derived from the reset's id with the portal's key.)
ALTER TABLE users
    ADD COLUMN password_reset_token_hash text,
    ADD COLUMN password_reset_expires_at timestamptz;

CREATE UNIQUE INDEX users_password_reset_token ON users (password_reset_token_hash)
    WHERE password_reset_token_hash IS NOT NULL;

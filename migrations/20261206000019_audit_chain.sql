-- Tamper evidence (CONTRACT 7, DESIGN "Audit chain"): every event's SHA-256 hash, chained in
-- commit order, i.e. the order catch-up readers follow: (tx_id, global_position). Hashes are
-- sealed by a catch-up subscriber a moment after commit, so the write path pays nothing; events
-- written before this migration are sealed by the same subscriber when the portal next starts.
-- The chain is never rebuilt: `replay` does not know this table, and nothing updates its rows.
CREATE TABLE audit_chain
(
    chain_position  bigint PRIMARY KEY CHECK (chain_position > 0),
    tx_id           bigint NOT NULL,
    global_position bigint NOT NULL UNIQUE,
    prev_hash       bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea  NOT NULL CHECK (length(hash) = 32)
);

-- The per-deployment salt of registration receipts' person-key hashes: a receipt proves who
-- registered a person first without carrying the person's data, and without the salt a hash of
-- an email address could be reversed by trying addresses. gen_random_uuid draws from the
-- server's strong random source; two of them give 244 random bits.
CREATE TABLE audit_salt
(
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    salt     bytea   NOT NULL
);
INSERT INTO audit_salt (salt)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- authd schema, version 2 (PostgreSQL): change tracking and signing keys.
--
-- Applied once by src/store/migrations.rs inside a transaction that holds
-- the migration advisory lock; never edit after release, add 0003_*.sql.

-- Time (ms, the writing instance's clock) of the last rotation or
-- revocation of the session; 0 for sessions never changed since creation.
-- `Store::changes_since` reads it to catch up on changes the change feed
-- missed. A constant default makes ADD COLUMN a catalogue-only change.
ALTER TABLE sessions ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;

CREATE INDEX sessions_updated_at_ms_idx ON sessions (updated_at_ms);

-- Token signing keys shared by every instance (see `SigningKeyRecord`).
CREATE TABLE signing_keys (
    kid           TEXT   PRIMARY KEY,
    algorithm     TEXT   NOT NULL,
    -- PKCS#8 DER, base64.
    private_key   TEXT   NOT NULL,
    -- Raw public key, base64url without padding.
    public_key    TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

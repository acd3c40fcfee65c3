-- authd schema, version 2 (SQLite): change tracking and signing keys.
--
-- Applied once by src/store/migrations.rs inside a BEGIN IMMEDIATE
-- transaction; never edit after release, add 0003_*.sql.

-- Time (ms) of the last rotation or revocation of the session; 0 for
-- sessions never changed since creation. Read by `Store::changes_since`.
ALTER TABLE sessions ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;

CREATE INDEX sessions_updated_at_ms_idx ON sessions (updated_at_ms);

-- Token signing keys shared by every instance (see `SigningKeyRecord`).
CREATE TABLE signing_keys (
    kid           TEXT    NOT NULL PRIMARY KEY,
    algorithm     TEXT    NOT NULL,
    -- PKCS#8 DER, base64.
    private_key   TEXT    NOT NULL,
    -- Raw public key, base64url without padding.
    public_key    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

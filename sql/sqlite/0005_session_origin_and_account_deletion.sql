-- authd schema, version 5 (SQLite): what a user sees of their sessions,
-- and accounts that can be deleted while their revocations live on.
--
-- See sql/postgres/0005 for the reasons. SQLite cannot drop a foreign key,
-- so `sessions` is rebuilt without it (same columns, plus the two new ones).

CREATE TABLE sessions_v5 (
    id             TEXT    NOT NULL PRIMARY KEY,
    user_id        TEXT    NOT NULL,
    generation     INTEGER NOT NULL CHECK (generation >= 0),
    issued_at_ms   INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL DEFAULT 0,
    user_int_id    INTEGER NOT NULL DEFAULT 0,
    client_address TEXT    NULL,
    user_agent     TEXT    NULL CHECK (length(user_agent) <= 256)
) STRICT;

INSERT INTO sessions_v5 (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms,
    created_at_ms, updated_at_ms, user_int_id)
SELECT id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms,
    created_at_ms, updated_at_ms, user_int_id FROM sessions;

DROP TABLE sessions;
ALTER TABLE sessions_v5 RENAME TO sessions;

CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at_ms DESC, id DESC);
CREATE INDEX sessions_expires_at_ms_idx ON sessions (expires_at_ms);

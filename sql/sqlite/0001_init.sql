-- authd schema, version 1 (SQLite).
--
-- Applied once by src/store/migrations.rs inside a BEGIN IMMEDIATE
-- transaction; never edit after release, add 0002_*.sql.
--
-- STRICT tables make SQLite enforce the declared column types (it otherwise
-- stores whatever it is given). UUIDs are TEXT holding the hyphenated,
-- lower-case form; times are INTEGER milliseconds since the Unix epoch.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    -- Already lower-cased by `Email`; the unique constraint is what
    -- guarantees one account per address.
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE sessions (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Generation of the one live access token (a u32 in the domain).
    generation    INTEGER NOT NULL CHECK (generation >= 0),
    issued_at_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    -- NULL while the session is live; `Session.revoked` is NOT NULL.
    revoked_at_ms INTEGER NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_ms_idx ON sessions (expires_at_ms);

-- Generated service secrets (the HS256 key under name 'hs256').
CREATE TABLE service_secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

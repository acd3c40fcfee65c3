-- authd schema, version 1 (PostgreSQL).
--
-- Applied once by src/store/migrations.rs inside a transaction that holds
-- the migration advisory lock; never edit after release, add 0002_*.sql.

CREATE TABLE users (
    id            UUID        PRIMARY KEY,
    -- Already lower-cased by `Email`; the unique constraint is what
    -- guarantees one account per address (its name is matched in code).
    email         TEXT        NOT NULL CONSTRAINT users_email_key UNIQUE,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id            UUID   PRIMARY KEY,
    user_id       UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Generation of the one live access token (a u32 in the domain).
    generation    BIGINT NOT NULL CHECK (generation >= 0),
    issued_at_ms  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    -- NULL while the session is live; `Session.revoked` is NOT NULL.
    revoked_at_ms BIGINT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_ms_idx ON sessions (expires_at_ms);

-- Generated service secrets shared by every instance (the HS256 key under
-- name 'hs256').
CREATE TABLE service_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

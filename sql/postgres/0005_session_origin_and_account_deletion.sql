-- authd schema, version 5 (PostgreSQL): what a user sees of their sessions,
-- and accounts that can be deleted while their revocations live on.
--
-- Runs inside authd's own schema (search_path `authd`). Never edit after
-- release; add 0006_*.sql.

-- Where a session was started (sign-in, sign-up, password change): the
-- client address as authd saw it and the User-Agent header (at most 256
-- characters, cut by authd). NULL for sessions from before this version,
-- for exchanged old tokens, and after the account was deleted.
ALTER TABLE sessions ADD COLUMN client_address TEXT NULL;
ALTER TABLE sessions ADD COLUMN user_agent TEXT NULL
    CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 256);

-- Deleting an account must not delete the revocation of its sessions: an
-- instance whose change feed was down while the account was deleted
-- catches up from `sessions.updated_at_ms` and must find them revoked. So
-- the sessions of a deleted user stay behind as revoked rows without
-- personal data (tombstones) until their lifetime ends and the prune
-- removes them; the cascade that would have removed them goes.
-- (Sessions for a user that does not exist are still refused at insert:
-- CREATE_SESSIONS checks the user row and locks it against deletion.)
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_user_id_fkey;

-- GET /sessions: a user's live sessions, newest first, paged by
-- (created_at_ms, id). Neither column changes after insert, so rotations
-- stay HOT updates. It replaces the index on user_id alone.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at_ms DESC, id DESC);
DROP INDEX IF EXISTS sessions_user_id_idx;

-- Old service's accounts (public.users ids) whose authd account was
-- deleted: their bcrypt hash and old tokens are never honoured again and
-- their e-mail is free for a new sign-up, though the old rows are still
-- there (authd never writes public.*).
CREATE TABLE legacy_deleted (
    legacy_id     BIGINT PRIMARY KEY,
    deleted_at_ms BIGINT NOT NULL
);

-- authd schema, version 4 (PostgreSQL): integer user ids and the tables
-- that let authd replace the old FastAPI service in place.
--
-- Runs inside authd's own schema (the connection's search_path is `authd`).
-- The old service's `public.users` and `public.access_tokens` are only ever
-- read (see src/store/postgres/legacy.rs); nothing here touches them.

-- Every user has an integer id. Accounts adopted from the old service keep
-- the old `users.id` (a SERIAL, so at most 2^31 - 1); accounts created by
-- authd draw from 2^31 upwards, a range the old service can never reach.
CREATE SEQUENCE user_int_id_seq START WITH 2147483648 MINVALUE 2147483648;
ALTER TABLE users ADD COLUMN int_id BIGINT;
UPDATE users SET int_id = nextval('user_int_id_seq');
ALTER TABLE users ALTER COLUMN int_id SET DEFAULT nextval('user_int_id_seq');
ALTER TABLE users ALTER COLUMN int_id SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_int_id_key UNIQUE (int_id);
-- The old service's `users.id` of an adopted account (NULL for authd's own).
ALTER TABLE users ADD COLUMN legacy_id BIGINT CONSTRAINT users_legacy_id_key UNIQUE;
-- Set by "log out everywhere": the old service's credentials of this account
-- (its tokens; its bcrypt hash, if authd holds no password yet) are refused
-- from then on, though their rows are still in its table.
ALTER TABLE users ADD COLUMN legacy_tokens_closed BOOLEAN NOT NULL DEFAULT false;
-- An empty password_hash means the password is still only the old service's
-- bcrypt hash (an account adopted by exchanging its token): the next
-- successful sign-in checks bcrypt once and stores an argon2id hash.

-- The user's integer id, copied into each session so that authorize and
-- the tokens' `user_id` claim need no join.
ALTER TABLE sessions ADD COLUMN user_int_id BIGINT NOT NULL DEFAULT 0;
UPDATE sessions s SET user_int_id = u.int_id FROM users u WHERE u.id = s.user_id;

-- authd's index of the old accounts by case-folded e-mail (the old table's
-- only e-mail index is case-sensitive). Filled by primary-key ranges
-- (`id > max(legacy_id)`), so accounts the old service creates while both run
-- are picked up without scanning e-mails.
CREATE TABLE legacy_users (
    legacy_id BIGINT PRIMARY KEY,
    email     TEXT   NOT NULL,
    email_key TEXT   NOT NULL
);
CREATE INDEX legacy_users_email_key_idx ON legacy_users (email_key);

-- Old tokens exchanged for an authd session (once each), by SHA-256.
CREATE TABLE legacy_exchanges (
    token_sha256    BYTEA  PRIMARY KEY,
    session_id      UUID   NOT NULL,
    exchanged_at_ms BIGINT NOT NULL
);

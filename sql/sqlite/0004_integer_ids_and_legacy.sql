-- authd schema, version 4 (SQLite): integer user ids. Accounts created by
-- authd draw from 2^31 upwards, as on PostgreSQL (where the range below is
-- the old service's). The legacy columns exist for the shared code paths;
-- SQLite never has an old service's tables to read.
ALTER TABLE users ADD COLUMN int_id INTEGER;
UPDATE users SET int_id = 2147483647 + rowid;
CREATE UNIQUE INDEX users_int_id_idx ON users (int_id);
ALTER TABLE users ADD COLUMN legacy_id INTEGER;
ALTER TABLE users ADD COLUMN legacy_tokens_closed INTEGER NOT NULL DEFAULT 0;

ALTER TABLE sessions ADD COLUMN user_int_id INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET user_int_id = COALESCE((SELECT int_id FROM users WHERE users.id = sessions.user_id), 0);

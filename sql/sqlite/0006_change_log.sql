-- authd schema, version 6 (SQLite): positions for the catch-up read (see
-- sql/postgres/0006 for PostgreSQL's change log).
--
-- SQLite has one writer and serves one instance, which runs no change feed.
-- So a position is simply a counter: each transaction that rotates or
-- revokes sessions takes the next value and stamps the rows it changes
-- with it; the catch-up read takes the rows stamped after a position. No
-- log table grows with every batch, and nothing needs pruning.
CREATE TABLE change_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq       INTEGER NOT NULL
) STRICT;
INSERT INTO change_counter (singleton, seq) VALUES (1, 0);

ALTER TABLE sessions ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;

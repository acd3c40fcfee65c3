-- authd schema, version 6 (PostgreSQL): the change log, read by the change
-- feed's catch-up instead of `sessions`.
--
-- Runs inside authd's own schema (search_path `authd`). Never edit after
-- release; add 0007_*.sql.

-- One row per statement that rotated or revoked sessions, written by that
-- statement itself (a data-modifying CTE), so it commits or rolls back with
-- the changes it lists: the sessions changed and their final states
-- (parallel arrays), so a reader never has to look at `sessions` at all.
-- `xid` is the writing transaction: a reader reads by it, taking only
-- entries of transactions its snapshot saw committed and keeping the ones
-- still in progress for its next read, so an entry whose transaction
-- commits after a later one is never skipped. Rows are only inserted and
-- deleted, never updated.
CREATE TABLE session_changes (
    xid         xid8      NOT NULL DEFAULT pg_current_xact_id(),
    -- The database's clock: what the retention prunes by.
    at_ms       BIGINT    NOT NULL
        DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    ids         UUID[]    NOT NULL,
    generations BIGINT[]  NOT NULL,
    issued      BIGINT[]  NOT NULL,
    revoked     BOOLEAN[] NOT NULL
);
CREATE INDEX session_changes_xid_idx ON session_changes (xid);
CREATE INDEX session_changes_at_ms_idx ON session_changes (at_ms);

-- The highest `xid` the retention pruned: a reader whose position is at or
-- below it may have lost entries and resyncs.
CREATE TABLE session_changes_pruned (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    through   xid8    NOT NULL
);
INSERT INTO session_changes_pruned (through) VALUES ('0');

-- Nothing here indexes a column of `sessions` that a rotation changes, so
-- rotations stay HOT updates.

-- authd schema, version 6 (SQLite): the change log (see sql/postgres/0006).
--
-- SQLite has one writer, so commit order is `seq` order and the position
-- is simply the last `seq` read. `ids` are the changed sessions' ids,
-- space-separated.
CREATE TABLE session_changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    ids   TEXT    NOT NULL
) STRICT;
CREATE INDEX session_changes_at_ms_idx ON session_changes (at_ms);

CREATE TABLE session_changes_pruned (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    through   INTEGER NOT NULL
) STRICT;
INSERT INTO session_changes_pruned (singleton, through) VALUES (1, 0);

-- Rotations are the hottest write. An index on a column every rotation
-- changes (updated_at_ms) forces a new entry in every index of the table for
-- each rotation; without it, and with room left in each page (fillfactor),
-- PostgreSQL rewrites the row in place (a HOT update) and touches no index.
-- The catch-up read that filters on updated_at_ms runs only after the change
-- feed reconnects, where a scan of the live sessions is acceptable.
DROP INDEX IF EXISTS sessions_updated_at_ms_idx;
ALTER TABLE sessions SET (fillfactor = 70);

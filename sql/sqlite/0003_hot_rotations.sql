-- The updated_at_ms index serves only PostgreSQL's change-feed catch-up,
-- which SQLite (one instance, no feed) never runs; keeping it would cost
-- every rotation an index update.
DROP INDEX IF EXISTS sessions_updated_at_ms_idx;

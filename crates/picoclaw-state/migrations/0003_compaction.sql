-- Compaction: the session's summary stands for every message up to this id; loads skip them
-- (they stay stored, for export).
ALTER TABLE sessions ADD COLUMN compacted_through INTEGER NOT NULL DEFAULT 0;

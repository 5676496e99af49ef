-- Providers (SQLite migration 0005): per-reader delivery marks and the session guard.
ALTER TABLE deliveries ADD COLUMN delivered_at BIGINT;
ALTER TABLE agents ADD COLUMN epoch BIGINT NOT NULL DEFAULT 1;
ALTER TABLE agents ADD COLUMN instance_id TEXT;

-- Providers: per-reader delivery marks (a monitor printed the message into its session) and
-- the session guard (the epoch a registration answers; the instance that holds it).
ALTER TABLE deliveries ADD COLUMN delivered_at INTEGER;
ALTER TABLE agents ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
ALTER TABLE agents ADD COLUMN instance_id TEXT;

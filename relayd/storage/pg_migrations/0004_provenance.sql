-- Provenance and payload-bound idempotency (SQLite migration 0004).
-- messages.sent_by: the principal that authenticated the send (admin, integration:<name>,
-- local); idempotency_keys.fingerprint: a hash of what the keyed request asked for.
ALTER TABLE messages ADD COLUMN sent_by TEXT;
ALTER TABLE idempotency_keys ADD COLUMN fingerprint TEXT;

-- Provenance and idempotency bound to the payload.
-- messages.sent_by: the principal that authenticated the send (admin, integration:<name>,
-- local); NULL for messages stored before this migration.
-- idempotency_keys.fingerprint: a hash of what the keyed request asked for, so the same key
-- with a different body is refused instead of replayed; NULL for keys recorded before.
ALTER TABLE messages ADD COLUMN sent_by TEXT;
ALTER TABLE idempotency_keys ADD COLUMN fingerprint TEXT;

-- Pair sessions: two agents locked into an exclusive conversation.
-- Timestamps are integer milliseconds since the epoch (UTC).

-- AUTOINCREMENT: pair ids never repeat.
CREATE TABLE pairs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    status             TEXT NOT NULL,   -- pending active rejected ended expired
    initiator          TEXT NOT NULL,
    partner            TEXT NOT NULL,
    objective          TEXT,
    created_at         INTEGER NOT NULL,
    accepted_at        INTEGER,
    ended_at           INTEGER,
    ended_by           TEXT,
    reason             TEXT,
    invite_message_id  INTEGER
);
CREATE INDEX pairs_initiator ON pairs(initiator);
CREATE INDEX pairs_partner ON pairs(partner);
-- The busy check and the reaper only look at open pairs.
CREATE INDEX pairs_open ON pairs(status, created_at) WHERE status IN ('pending', 'active');

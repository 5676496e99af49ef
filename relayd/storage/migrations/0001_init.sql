-- Agents, messages with per-recipient read state, the event log and idempotency keys.
-- Timestamps are integer milliseconds since the epoch (UTC).

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    label         TEXT,
    machine       TEXT,
    project       TEXT,
    provider      TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',
    capabilities  TEXT NOT NULL DEFAULT '["chat"]',
    channels      TEXT NOT NULL DEFAULT '["*"]',
    status        TEXT NOT NULL DEFAULT 'online',
    approval      TEXT NOT NULL DEFAULT 'open',
    meta          TEXT NOT NULL DEFAULT '{}',
    version       TEXT,
    registered_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    offline_since INTEGER
);

-- AUTOINCREMENT: ids never repeat, even after the newest message is deleted.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sender      TEXT NOT NULL,
    target      TEXT NOT NULL,
    subject     TEXT,
    body        TEXT NOT NULL,
    channel     TEXT,
    reply_to    INTEGER,
    thread_id   INTEGER,
    claimable   INTEGER NOT NULL DEFAULT 0,
    claimed_by  TEXT,
    claimed_at  INTEGER,
    created_at  INTEGER NOT NULL,
    meta        TEXT NOT NULL DEFAULT '{}',
    task_id     INTEGER
);
CREATE INDEX messages_thread ON messages(thread_id);
CREATE INDEX messages_created ON messages(created_at);
CREATE INDEX messages_open_claims ON messages(id) WHERE claimable = 1 AND claimed_by IS NULL;

CREATE TABLE deliveries (
    agent_id    TEXT NOT NULL,
    message_id  INTEGER NOT NULL,
    read_at     INTEGER,
    PRIMARY KEY (agent_id, message_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_message ON deliveries(message_id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    audience    TEXT,            -- JSON list of agent ids; NULL: everyone
    created_at  INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
    scope       TEXT NOT NULL,   -- 'message' or 'integration-event'
    sender      TEXT NOT NULL,
    key         TEXT NOT NULL,
    ref_id      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, sender, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency_keys(created_at);

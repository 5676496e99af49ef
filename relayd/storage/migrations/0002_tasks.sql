-- Tasks from integrations, their event history, the durable callback outbox, and what each
-- integration has been seen doing. Timestamps are integer milliseconds since the epoch (UTC).

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source           TEXT NOT NULL,
    type             TEXT NOT NULL,
    severity         TEXT,
    dedupe_key       TEXT,
    title            TEXT NOT NULL,
    body             TEXT,
    target           TEXT NOT NULL,
    channel          TEXT,
    status           TEXT NOT NULL DEFAULT 'open',
    claimed_by       TEXT,
    claimed_at       INTEGER,
    progress         TEXT,            -- JSON
    result           TEXT,            -- JSON
    occurrence_count INTEGER NOT NULL DEFAULT 1,
    first_seen_at    INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    lease_renewed_at INTEGER,         -- last claim or report by the holder
    message_id       INTEGER,
    meta             TEXT NOT NULL DEFAULT '{}',
    callbacks        INTEGER NOT NULL DEFAULT 0
);
-- At most one active task per (source, dedupeKey): the writer checks first, this guards it.
CREATE UNIQUE INDEX tasks_active_dedupe ON tasks(source, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status NOT IN ('done', 'failed', 'cancelled');
CREATE INDEX tasks_status ON tasks(status, id);
CREATE INDEX tasks_source ON tasks(source, id);
CREATE INDEX tasks_message ON tasks(message_id);

CREATE TABLE task_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     INTEGER NOT NULL,
    type        TEXT NOT NULL,
    actor       TEXT,
    data        TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX task_events_task ON task_events(task_id, id);

CREATE TABLE callback_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT NOT NULL UNIQUE,  -- X-Agent-Relay-Delivery, stable across retries
    integration     TEXT NOT NULL,
    task_id         INTEGER NOT NULL,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,         -- the exact JSON sent (and signed) on every attempt
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending, delivered, dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX callback_outbox_pending ON callback_outbox(task_id, id) WHERE status = 'pending';
CREATE INDEX callback_outbox_integration ON callback_outbox(integration, status);

CREATE TABLE integrations_seen (
    name                 TEXT PRIMARY KEY,
    first_event_at       INTEGER NOT NULL,
    last_event_at        INTEGER NOT NULL,
    events               INTEGER NOT NULL DEFAULT 0,
    tasks_created        INTEGER NOT NULL DEFAULT 0,
    occurrences          INTEGER NOT NULL DEFAULT 0,
    resolved             INTEGER NOT NULL DEFAULT 0,
    callbacks_delivered  INTEGER NOT NULL DEFAULT 0,
    callbacks_failed     INTEGER NOT NULL DEFAULT 0,
    callbacks_dead       INTEGER NOT NULL DEFAULT 0,
    last_callback_status TEXT,     -- delivered, retrying, dead
    last_callback_at     INTEGER,
    last_callback_error  TEXT
) WITHOUT ROWID;

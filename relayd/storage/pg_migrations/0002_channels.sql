-- Channels (SQLite migration 0007): durable state of chat bridges and the links between their
-- message ids and relay messages.

CREATE TABLE channel_state (
    channel     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (channel, key)
);

CREATE TABLE channel_links (
    channel      TEXT NOT NULL,
    chat         TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    message_id   BIGINT NOT NULL,
    part         INTEGER NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (channel, chat, external_id)
);
CREATE INDEX channel_links_message ON channel_links(message_id, channel, chat);

-- Channels (bridges to chat services such as Telegram): their durable state and the links
-- between their own message ids and relay messages. Timestamps are integer milliseconds.

-- Small named values per channel, e.g. Telegram's getUpdates offset.
CREATE TABLE channel_state (
    channel     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, key)
);

-- One row per message the channel saw or posted in one of its chats: a reply there names
-- `external_id`, which leads back to the relay message. `part` numbers the pieces of a long
-- body posted as several chat messages (0 for inbound messages).
CREATE TABLE channel_links (
    channel      TEXT NOT NULL,
    chat         TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    message_id   INTEGER NOT NULL,
    part         INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, chat, external_id)
);
CREATE INDEX channel_links_message ON channel_links(message_id, channel, chat);

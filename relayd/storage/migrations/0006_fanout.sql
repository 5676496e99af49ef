-- Fan-out stored once. A selector message (tag:, cap:, label:, machine:, broadcast) no longer
-- gets a deliveries row per recipient: it points at one shared audience, the set of agents its
-- target matched when it was sent (the sender, never its own recipient, is left out by every
-- query). Many messages share one audience while the agents stay the same, so a broadcast to
-- 10,000 agents writes one message row. deliveries keeps the rows of direct and late
-- deliveries, and the read state of audience members once they mark a message.
-- Events refer to a message's recipients (audience_message) instead of copying the list.

CREATE TABLE audiences (
    id      INTEGER PRIMARY KEY,
    digest  TEXT UNIQUE,        -- sha256 of the sorted member list; NULL once a member left
    size    INTEGER NOT NULL
);

CREATE TABLE audience_members (
    agent_id     TEXT NOT NULL,
    audience_id  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, audience_id)
) WITHOUT ROWID;
CREATE INDEX audience_members_set ON audience_members(audience_id);

ALTER TABLE messages ADD COLUMN audience_id INTEGER;
-- recipients through the audience (its members other than the sender), for /stats
ALTER TABLE messages ADD COLUMN audience_size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_audience ON messages(audience_id, id) WHERE audience_id IS NOT NULL;

ALTER TABLE events ADD COLUMN audience_message INTEGER;
CREATE INDEX events_audience_message ON events(audience_message)
    WHERE audience_message IS NOT NULL;

-- Bumped by every change to who a target matches (triggers, so no code path can forget):
-- the writer's cache of resolved audiences is valid while it stays the same.
CREATE TABLE fanout_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    agents_generation  INTEGER NOT NULL
);
INSERT INTO fanout_state (id, agents_generation) VALUES (1, 0);

CREATE TRIGGER agents_generation_insert AFTER INSERT ON agents
BEGIN
    UPDATE fanout_state SET agents_generation = agents_generation + 1;
END;

CREATE TRIGGER agents_generation_delete AFTER DELETE ON agents
BEGIN
    UPDATE fanout_state SET agents_generation = agents_generation + 1;
END;

CREATE TRIGGER agents_generation_update AFTER UPDATE ON agents
WHEN OLD.id IS NOT NEW.id OR OLD.tags IS NOT NEW.tags
    OR OLD.capabilities IS NOT NEW.capabilities OR OLD.channels IS NOT NEW.channels
    OR OLD.label IS NOT NEW.label OR OLD.machine IS NOT NEW.machine
BEGIN
    UPDATE fanout_state SET agents_generation = agents_generation + 1;
END;

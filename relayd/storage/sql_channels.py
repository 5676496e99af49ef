"""Channel operations (run on the SQLite writer or reader thread): durable cursors and the
chat-message ↔ relay-message links a bridge needs to map replies."""

from __future__ import annotations

from relayd.storage import sql_messages
from relayd.storage.base import ChannelLink, MessageDraft, SendResult
from relayd.storage.sqlite_tx import Tx


def get_state(tx: Tx, channel: str, key: str) -> str | None:
    value = tx.scalar(
        "SELECT value FROM channel_state WHERE channel = ? AND key = ?", (channel, key)
    )
    return None if value is None else str(value)


def set_state(tx: Tx, channel: str, key: str, value: str) -> None:
    tx.run(
        "INSERT INTO channel_state (channel, key, value, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        (channel, key, value, tx.now),
    )


def link(tx: Tx, channel: str, item: ChannelLink) -> None:
    tx.run(
        "INSERT INTO channel_links"
        " (channel, chat, external_id, message_id, part, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (channel, chat, external_id) DO UPDATE SET message_id = excluded.message_id,"
        " part = excluded.part, created_at = excluded.created_at",
        (channel, item.chat, item.external_id, item.message_id, item.part, tx.now),
    )


def receive(
    tx: Tx,
    channel: str,
    draft: MessageDraft,
    links: list[tuple[str, str]],
    state: dict[str, str],
) -> SendResult:
    """One inbound chat message: the relay message, its links and the channel's cursor, in one
    transaction, so a crash leaves either all of them or none."""
    result = sql_messages.send(tx, draft)
    for chat, external_id in links:
        link(tx, channel, ChannelLink(chat, external_id, result.message.id))
    for key, value in state.items():
        set_state(tx, channel, key, value)
    return result


def find_message(tx: Tx, channel: str, chat: str, external_id: str) -> int | None:
    value = tx.scalar(
        "SELECT message_id FROM channel_links WHERE channel = ? AND chat = ? AND external_id = ?",
        (channel, chat, external_id),
    )
    return None if value is None else int(value)


def links_of(tx: Tx, channel: str, message_id: int, chat: str) -> list[ChannelLink]:
    rows = tx.all(
        "SELECT chat, external_id, message_id, part FROM channel_links"
        " WHERE message_id = ? AND channel = ? AND chat = ? ORDER BY part, created_at",
        (message_id, channel, chat),
    )
    return [ChannelLink(r["chat"], r["external_id"], r["message_id"], r["part"]) for r in rows]


def prune(tx: Tx, before_ms: int) -> int:
    """Retention: links older than the messages they point to may go with them."""
    return tx.run("DELETE FROM channel_links WHERE created_at < ?", (before_ms,)).rowcount

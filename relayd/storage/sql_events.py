"""The event log, counters for /stats, and retention of the log itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from relayd.domain.models import Event, Recipients
from relayd.storage import sql_fanout
from relayd.storage.sql_fanout import AUDIENCE_MEMBER_SQL, DELIVERY_ROW_SQL
from relayd.storage.sqlite_tx import Tx, loads, placeholders


def row_to_event(row: sqlite3.Row, reader: str | None = None) -> Event:
    listed = row["audience"]
    audience: Collection[str] | None
    if reader is not None:  # the query kept only what this reader sees
        audience = frozenset((reader,))
    elif row["audience_message"] is not None:  # a message's recipients: resolved per reader
        audience = frozenset(loads(listed, []))
    else:
        audience = None if listed is None else frozenset(loads(listed, []))
    return Event(
        id=row["id"],
        type=row["type"],
        data=loads(row["data"], {}),
        audience=audience,
        created_at=row["created_at"],
        data_json=row["data"],  # the stored text: a replayed frame is the live frame, unre-encoded
        of_message=row["audience_message"],
    )


def visible_sql(tx: Tx) -> str:
    """Whether reader :agent sees event e: everyone's events, events listing it, and events
    of a message it receives (message.new: as sent; later events: its recipients now)."""
    return f"""(
    (e.audience IS NULL AND e.audience_message IS NULL)
    OR (e.audience IS NOT NULL AND EXISTS
        (SELECT 1 FROM {tx.json_values("e.audience", "j")} WHERE j.value = :agent))
    OR (e.audience_message IS NOT NULL AND EXISTS (
        SELECT 1 FROM messages m WHERE m.id = e.audience_message AND (
            {AUDIENCE_MEMBER_SQL}
            OR ((e.type != 'message.new' OR m.audience_id IS NULL) AND {DELIVERY_ROW_SQL}))))
)"""


def after(
    tx: Tx, after_id: int, limit: int, max_bytes: int | None = None, reader: str | None = None
) -> list[Event]:
    """Up to `limit` events after `after_id`; with `max_bytes`, stop once their stored JSON
    reaches that size (at least one event), so a page of big events stays small in memory;
    with `reader`, only those it sees."""
    if reader is None:
        rows = tx.rows(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
    else:
        rows = tx.rows(
            f"SELECT e.* FROM events e WHERE e.id > :after AND {visible_sql(tx)}"
            " ORDER BY e.id LIMIT :limit",
            {"after": after_id, "limit": limit, "agent": reader},
        )
    events: list[Event] = []
    size = 0
    for row in rows:  # row by row: what is past the budget is never fetched
        events.append(row_to_event(row, reader))
        size += len(row["data"])
        if max_bytes is not None and size >= max_bytes:
            break
    return events


def with_live_audiences(tx: Tx, events: list[Event]) -> list[Event]:
    """Events read back from the log, each given what Tx.emit gives the events it records
    (PostgreSQL replicas publish the log, not their own writes): an event of a message sees
    that message's recipients, the lookup live ``?for=`` readers are checked against."""
    ids = sorted({e.of_message for e in events if e.of_message is not None})
    if not ids:
        return events
    marks = placeholders(len(ids))
    messages = {
        r["id"]: (r["sender"], r["audience_id"])
        for r in tx.all(f"SELECT id, sender, audience_id FROM messages WHERE id IN ({marks})", ids)
    }
    rows: dict[int, set[str]] = {}
    for r in tx.all(
        f"SELECT message_id, agent_id FROM deliveries WHERE message_id IN ({marks})", ids
    ):
        rows.setdefault(r["message_id"], set()).add(r["agent_id"])
    for event in events:
        if event.of_message is None:
            continue
        message_id, event.of_message = event.of_message, None
        listed = set(event.audience or ())
        sender, audience_id = messages.get(message_id, ("", None))
        if event.type != "message.new" or audience_id is None:  # as visible_sql decides
            listed |= rows.get(message_id, set())
        if audience_id is None:
            event.audience = frozenset(listed)
        else:
            members = sql_fanout.cache(tx).get(tx, audience_id).lookup
            event.audience = Recipients(members, sender, frozenset(listed))
    return events


def latest_id(tx: Tx) -> int:
    return tx.last_id("events")


def prune(tx: Tx, keep: int) -> int:
    newest = latest_id(tx)
    return tx.run("DELETE FROM events WHERE id <= ?", (newest - keep,)).rowcount


def stats(tx: Tx) -> dict[str, Any]:
    agents = {r[0]: r[1] for r in tx.all("SELECT status, COUNT(*) FROM agents GROUP BY status")}
    total_agents = sum(agents.values())
    return {
        "agents": {
            "total": total_agents,
            "online": total_agents - agents.get("offline", 0),
            "offline": agents.get("offline", 0),
            "byStatus": agents,
        },
        "messages": {
            "total": tx.scalar("SELECT COUNT(*) FROM messages"),
            "unread": tx.scalar(UNREAD_SQL),
            "latestId": tx.last_id("messages"),
        },
        "events": {"latestId": latest_id(tx)},
    }


# Unread (recipient, message) pairs: unread rows, plus every audience recipient, less the
# audience members that have a row (their read state is that row, counted in the first term).
UNREAD_SQL = """SELECT
    (SELECT COUNT(*) FROM deliveries WHERE read_at IS NULL)
    + (SELECT COALESCE(SUM(audience_size), 0) FROM messages WHERE audience_id IS NOT NULL)
    - (SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id
       WHERE m.audience_id IS NOT NULL AND m.sender != d.agent_id AND EXISTS
           (SELECT 1 FROM audience_members am
            WHERE am.agent_id = d.agent_id AND am.audience_id = m.audience_id))"""

"""The event log, counters for /stats, and retention of the log itself."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from relayd.domain.models import Event
from relayd.storage.sqlite_tx import Tx


def row_to_event(row: sqlite3.Row) -> Event:
    audience = row["audience"]
    return Event(
        id=row["id"],
        type=row["type"],
        data=json.loads(row["data"]),
        audience=None if audience is None else frozenset(json.loads(audience)),
        created_at=row["created_at"],
        data_json=row["data"],  # the stored text: a replayed frame is the live frame, unre-encoded
    )


def after(tx: Tx, after_id: int, limit: int, max_bytes: int | None = None) -> list[Event]:
    """Up to `limit` events after `after_id`; with `max_bytes`, stop once their stored JSON
    reaches that size (at least one event), so a page of big events stays small in memory."""
    cursor = tx.run("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    events: list[Event] = []
    size = 0
    try:
        for row in cursor:  # row by row: what is past the budget is never fetched
            events.append(row_to_event(row))
            size += len(row["data"])
            if max_bytes is not None and size >= max_bytes:
                break
    finally:
        cursor.close()
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
            "unread": tx.scalar("SELECT COUNT(*) FROM deliveries WHERE read_at IS NULL"),
            "latestId": tx.last_id("messages"),
        },
        "events": {"latestId": latest_id(tx)},
    }

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


def after(tx: Tx, after_id: int, limit: int) -> list[Event]:
    rows = tx.all("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    return [row_to_event(r) for r in rows]


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

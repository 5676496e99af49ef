"""The synchronous side of the SQLite backend: a transaction context and row helpers.

Store operations are plain functions ``op(tx) -> result`` that run on the connection's own
thread, so a whole group commit costs one thread hop instead of one per statement.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from relayd.domain.models import Event, now_ms


class Tx:
    """One operation's view of the database; collects the events it records."""

    def __init__(self, db: sqlite3.Connection, now: int | None = None) -> None:
        self.db = db
        self.now = now_ms() if now is None else now
        self.events: list[Event] = []

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def last_id(self, table: str) -> int:
        """The highest id an AUTOINCREMENT table ever assigned (0 before the first row)."""
        return int(self.scalar("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)) or 0)

    def run(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def insert_rows(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        """``INSERT … VALUES (…), (…), …`` in as few statements as the variable limit allows.

        executemany steps once per row and each step hands the GIL to the event loop and
        back; one multi-row statement does the whole group commit's rows in one step.
        """
        if not rows:
            return
        width = len(rows[0])
        group = (", ".join(["?"] * width)).join("()")
        per_statement = max(1, MAX_VARIABLES // width)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = ", ".join([group] * len(chunk))
            self.db.execute(f"{insert} VALUES {values}", [v for row in chunk for v in row])

    def emit(
        self, type_: str, data: dict[str, Any], audience: Iterable[str] | None = None
    ) -> Event:
        members = None if audience is None else frozenset(audience)
        stored_audience = None if members is None else dumps(sorted(members))
        text = dumps(data)
        cursor = self.db.execute(
            "INSERT INTO events (type, data, audience, created_at) VALUES (?, ?, ?, ?)",
            (type_, text, stored_audience, self.now),
        )
        event = Event(int(cursor.lastrowid or 0), type_, data, members, self.now, text)
        self.events.append(event)
        return event

    def emit_many(
        self, type_: str, items: Sequence[tuple[dict[str, Any], Iterable[str] | None]]
    ) -> list[Event]:
        """Record several events of one type with one statement (ids assigned here: we are
        the only writer, inside the write transaction)."""
        first = self.last_id("events") + 1
        events, rows = [], []
        for offset, (data, audience) in enumerate(items):
            members = None if audience is None else frozenset(audience)
            text = dumps(data)
            events.append(Event(first + offset, type_, data, members, self.now, text))
            stored = None if members is None else dumps(sorted(members))
            rows.append((first + offset, type_, text, stored, self.now))
        self.insert_rows("INSERT INTO events (id, type, data, audience, created_at)", rows)
        self.events.extend(events)
        return events


MAX_VARIABLES = 32766  # SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32


# One encoder: json.dumps with non-default options builds a new encoder on every call, and
# the writer encodes a few values per message.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


def sql_list(values: Iterable[str]) -> str:
    """`('a', 'b')` for an IN clause over our own constants (never client input)."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


def placeholders(count: int) -> str:
    return ",".join("?" * count)

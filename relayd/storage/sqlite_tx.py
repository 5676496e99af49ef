"""The synchronous side of the SQLite backend: a transaction context and row helpers.

Store operations are plain functions ``op(tx) -> result`` that run on the connection's own
thread, so a whole group commit costs one thread hop instead of one per statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

from relayd import jsoncodec
from relayd.domain.models import Event, now_ms

Params = Sequence[Any] | Mapping[str, Any]  # positional (?) or named (:name)


class Tx:
    """One operation's view of the database; collects the events it records."""

    def __init__(
        self, db: sqlite3.Connection, now: int | None = None, fanout: object | None = None
    ) -> None:
        self.db = db
        self.now = now_ms() if now is None else now
        self.events: list[Event] = []
        # the writer's sql_fanout.FanoutCache (sql_fanout.cache(tx) makes one outside it)
        self.fanout_cache = fanout

    def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def last_id(self, table: str) -> int:
        """The highest id an AUTOINCREMENT table ever assigned (0 before the first row)."""
        return int(self.scalar("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)) or 0)

    def reserve_ids(self, table: str, count: int) -> int:
        """The first of `count` consecutive new ids for explicit-id inserts into `table` (we
        are the only writer, inside the write transaction; AUTOINCREMENT follows them)."""
        return self.last_id(table) + 1

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of a top-level key of a JSON text column."""
        return f"json_extract({column}, '$.{key}')"

    def json_values(self, expr: str, alias: str) -> str:
        """A FROM item: the elements of the JSON text array `expr`, as column `alias`.value."""
        return f"json_each({expr}) {alias}"

    def rows(self, sql: str, params: Params = ()) -> Iterator[sqlite3.Row]:
        """Rows one at a time: what the caller stops before is never fetched."""
        cursor = self.db.execute(sql, params)
        try:
            yield from cursor
        finally:
            cursor.close()

    def run(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def insert_rows(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        """``INSERT … VALUES (…), (…), …`` in few statements of few shapes.

        executemany steps once per row and each step hands the GIL to the event loop and
        back; one multi-row statement does many rows in one step. The rows go in chunks of
        a power of two (at most the variable limit), so a table sees about ten statement
        shapes whatever the batch sizes, and each stays in the connection's statement cache:
        a shape per batch size thrashed it, and preparing a 30-row insert again cost about
        five times running it.
        """
        if not rows:
            return
        width = len(rows[0])
        per_statement = max(1, MAX_VARIABLES // width)
        start, total = 0, len(rows)
        while start < total:
            size = min(per_statement, 1 << ((total - start).bit_length() - 1))
            chunk = rows[start : start + size]
            self.db.execute(_values_sql(insert, width, size), list(chain.from_iterable(chunk)))
            start += size

    def emit(
        self,
        type_: str,
        data: dict[str, Any],
        audience: Iterable[str] | None = None,
        *,
        of_message: int | None = None,
        live: Collection[str] | None = None,
    ) -> Event:
        """Record an event. `audience`: the agent ids that see it (None: everyone). With
        `of_message`, the recipients of that message see it too: the log stores the reference
        (resolved by a join on replay) and `live` is the in-memory lookup for live readers."""
        listed = None if audience is None else frozenset(audience)
        text = dumps(data)
        cursor = self.run(
            "INSERT INTO events (type, data, audience, audience_message, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (type_, text, None if listed is None else dumps(sorted(listed)), of_message,
             self.now),
        )
        seen_by = listed if of_message is None else (live if live is not None else frozenset())
        event = Event(int(cursor.lastrowid or 0), type_, data, seen_by, self.now, text)
        self.events.append(event)
        return event

    def emit_many(self, type_: str, items: Sequence[EventSpec]) -> list[Event]:
        """Record several events of one type with one statement (ids assigned here: we are
        the only writer, inside the write transaction)."""
        first = self.reserve_ids("events", len(items))
        events, rows = [], []
        for offset, (data, audience, of_message, live) in enumerate(items):
            listed = None if audience is None else frozenset(audience)
            text = dumps(data)
            stored = None if listed is None else dumps(sorted(listed))
            if of_message is None:
                seen_by: Collection[str] | None = listed
            else:
                seen_by = live if live is not None else frozenset()
            events.append(Event(first + offset, type_, data, seen_by, self.now, text))
            rows.append((first + offset, type_, text, stored, of_message, self.now))
        self.insert_rows(
            "INSERT INTO events (id, type, data, audience, audience_message, created_at)", rows
        )
        self.events.extend(events)
        return events


# (data, audience, of_message, live): see Tx.emit
EventSpec = tuple[dict[str, Any], Iterable[str] | None, int | None, Collection[str] | None]


MAX_VARIABLES = 32766  # SQLite's default SQLITE_MAX_VARIABLE_NUMBER since 3.32


@lru_cache(maxsize=256)
def _values_sql(insert: str, width: int, count: int) -> str:
    group = (", ".join(["?"] * width)).join("()")
    return f"{insert} VALUES {', '.join([group] * count)}"


def dumps(value: Any) -> str:
    return jsoncodec.dumps(value)


def loads(text: str | None, default: Any) -> Any:
    return default if text is None else jsoncodec.loads(text)


def sql_list(values: Iterable[str]) -> str:
    """`('a', 'b')` for an IN clause over our own constants (never client input)."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


def placeholders(count: int) -> str:
    return ",".join("?" * count)

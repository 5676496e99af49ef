"""The PostgreSQL side of the shared store operations: a ``Tx`` over an asyncpg connection.

The operations in relayd/storage/sql_*.py are synchronous functions written once for both
backends. Here each runs on a PostgreSQL connection's own thread, which owns a private event
loop and the asyncpg connection: every statement is ``loop.run_until_complete(conn.fetch(…))``
on that thread, so the operations stay plain functions and the main loop never blocks.

SQL is written with ``?`` placeholders and translated once per statement text to ``$1…$n``.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import asyncpg

from relayd.storage.sqlite_tx import Params, Tx

T = TypeVar("T")
IDENTITY_TABLES = frozenset(
    {"messages", "events", "tasks", "task_events", "callback_outbox", "pairs", "audiences"}
)
MAX_PARAMETERS = 32767  # asyncpg/PostgreSQL bind at most 32767 parameters per statement
_INSERT_INTO = re.compile(r"\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def pg_sql(sql: str) -> str:
    """`?` placeholders (outside quoted strings) become `$1`, `$2`, …"""
    return translate(sql)[0]


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[str, ...]]:
    """`?` (positional) or `:name` (named) placeholders outside quoted strings become `$n`;
    answers the text and, for named ones, the names in `$n` order (`::type` casts stay)."""
    out: list[str] = []
    names: list[str] = []
    number = 0
    quote: str | None = None
    index = 0
    while index < len(sql):
        char = sql[index]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            index += 1
            continue
        elif char == ":" and sql.startswith("::", index):
            out.append("::")
            index += 2
            continue
        elif char == ":" and (match := _NAME.match(sql, index + 1)) is not None:
            name = match.group(0)
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            index = match.end()
            continue
        out.append(char)
        index += 1
    return "".join(out), tuple(names)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def bind(sql: str, params: Params) -> tuple[str, Sequence[Any]]:
    """The PostgreSQL text of `sql` and its arguments in `$n` order."""
    text, names = translate(sql)
    if isinstance(params, Mapping):
        return text, [params[name] for name in names]
    return text, params


@functools.lru_cache(maxsize=1024)
def _identity_insert(sql: str) -> bool:
    """An INSERT into a table with an identity id, without its own RETURNING clause."""
    match = _INSERT_INTO.match(sql)
    return bool(match and match.group(1) in IDENTITY_TABLES and "RETURNING" not in sql.upper())


class PgResult:
    """What callers read of a sqlite3 cursor after tx.run: rowcount and lastrowid."""

    __slots__ = ("lastrowid", "rowcount")

    def __init__(self, rowcount: int, lastrowid: int | None = None) -> None:
        self.rowcount = rowcount
        self.lastrowid = lastrowid


def _rowcount(status: str) -> int:
    """asyncpg answers execute() with the command tag: 'UPDATE 3', 'INSERT 0 1', …"""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PgTx(Tx):
    """One operation's view of a PostgreSQL transaction (runs on the connection's thread)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: asyncpg.Connection,
        writing: bool,
        sequences: dict[str, str],
        now: int | None = None,
        fanout: object | None = None,
    ) -> None:
        super().__init__(cast(Any, None), now, fanout)
        self.loop = loop
        self.conn = conn
        self.writing = writing
        self.sequences = sequences

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def one(self, sql: str, params: Params = ()) -> Any:
        text, args = bind(sql, params)
        return self.wait(self.conn.fetchrow(text, *args))

    def all(self, sql: str, params: Params = ()) -> list[Any]:
        text, args = bind(sql, params)
        return list(self.wait(self.conn.fetch(text, *args)))

    def rows(self, sql: str, params: Params = ()) -> Iterator[Any]:
        return iter(self.all(sql, params))

    def scalar(self, sql: str, params: Params = ()) -> Any:
        text, args = bind(sql, params)
        return self.wait(self.conn.fetchval(text, *args))

    def run(self, sql: str, params: Params = ()) -> Any:
        text, args = bind(sql, params)
        if _identity_insert(sql):
            rows = self.wait(self.conn.fetch(text + " RETURNING id", *args))
            return PgResult(len(rows), int(rows[-1][0]) if rows else None)
        status = self.wait(self.conn.execute(text, *args))
        return PgResult(_rowcount(status))

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            self.wait(self.conn.executemany(pg_sql(sql), batch))

    def insert_rows(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        width = len(rows[0])
        per_statement = max(1, MAX_PARAMETERS // width)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            groups = []
            for index in range(len(chunk)):
                base = index * width
                groups.append("(" + ", ".join(f"${base + k + 1}" for k in range(width)) + ")")
            self.wait(
                self.conn.execute(
                    f"{insert} VALUES {', '.join(groups)}", *[v for row in chunk for v in row]
                )
            )

    def last_id(self, table: str) -> int:
        """Writing (under the writer lock): the sequence itself. Reading: the committed mark,
        since the sequence also counts ids of transactions still in flight."""
        if self.writing:
            row = self.one(f"SELECT last_value, is_called FROM {self.sequences[table]}")
            return int(row[0]) if row is not None and row[1] else 0
        value = self.scalar("SELECT value FROM id_marks WHERE name = ?", (table,))
        return int(value or 0)

    def reserve_ids(self, table: str, count: int) -> int:
        """`count` consecutive ids: safe because the writer lock admits one writer at once."""
        if count <= 0:
            return self.last_id(table) + 1
        seq = self.sequences[table]
        last = self.scalar(f"SELECT setval('{seq}', nextval('{seq}') + ? - 1)", (count,))
        return int(last) - count + 1

    def json_text(self, column: str, key: str) -> str:
        return f"({column}::jsonb ->> '{key}')"

    def json_values(self, expr: str, alias: str) -> str:
        return f"jsonb_array_elements_text(({expr})::jsonb) AS {alias}(value)"

"""Copy a SQLite relay database into PostgreSQL (`relayctl migrate-db --to postgresql://…`).

relayctl runs ``main([SOURCE, URL])`` in a child process (as it starts relayd), so the command
line never imports the storage layer; it prints one JSON object, ``{"source", "target" (no
password), "tables"}``, or ``{"error"}`` with exit code 1.

The SQLite file is read in one read transaction (a consistent snapshot, also of a live WAL
database), the PostgreSQL schema is created by the PostgresStore migrations, every table's
rows are copied in one PostgreSQL transaction, the id sequences and committed id marks are set
past the highest id SQLite ever handed out (ids keep only growing), and the row counts of both
sides are compared before the transaction commits. A target that already holds data is refused.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import asyncpg

from relayd.storage.pg_tx import IDENTITY_TABLES
from relayd.storage.postgres import PostgresStore, connect, connection_lost, redact

BATCH = 5000
SKIPPED = {"schema_migrations", "sqlite_sequence", "id_marks", "fanout_state"}


class CopyError(RuntimeError):
    """The copy cannot be made; nothing was written to PostgreSQL."""


def _sqlite_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return sorted(r[0] for r in rows if r[0] not in SKIPPED)


async def copy_sqlite_to_postgres(source: Path, db_url: str) -> dict[str, dict[str, int]]:
    """Copy; answers {table: {"sqlite": n, "postgresql": n}} (equal, or CopyError)."""
    if not await asyncio.to_thread(source.exists):
        raise CopyError(f"no SQLite database at {source}")
    store = PostgresStore(db_url)  # creates (or brings up to date) the schema
    await store.open(lambda events: None)
    await store.close()
    db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        db.execute("BEGIN")  # one snapshot for the whole copy
        conn = await connect(db_url)
        try:
            return await _copy(db, conn)
        finally:
            await conn.close()
    finally:
        db.close()


async def _copy(db: sqlite3.Connection, conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    target_tables = {
        r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    }
    counts: dict[str, dict[str, int]] = {}
    async with conn.transaction():
        for table in _sqlite_tables(db):
            if table not in target_tables:
                raise CopyError(f"table {table} has no PostgreSQL counterpart (a newer relayd?)")
            if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                raise CopyError(f"the PostgreSQL table {table} is not empty; copy into an empty"
                                " database (or schema)")
            source_rows = int(db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
            await _copy_table(db, conn, table)
            copied = int(await conn.fetchval(f'SELECT COUNT(*) FROM "{table}"'))
            counts[table] = {"sqlite": source_rows, "postgresql": copied}
            if copied != source_rows:
                raise CopyError(f"{table}: {source_rows} rows in SQLite, {copied} copied")
        await _carry_ids(db, conn)
    return counts


async def _copy_table(db: sqlite3.Connection, conn: asyncpg.Connection, table: str) -> None:
    target_columns = {
        r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1", table
        )
    }
    source_columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
    missing = [c for c in source_columns if c not in target_columns]
    if missing:
        raise CopyError(f"{table}: columns {', '.join(missing)} have no PostgreSQL counterpart")
    cursor = db.execute(f'SELECT {", ".join(source_columns)} FROM "{table}"')
    while True:
        rows: list[Any] = cursor.fetchmany(BATCH)
        if not rows:
            return
        await conn.copy_records_to_table(
            table, records=[tuple(r) for r in rows], columns=source_columns,
            schema_name=await conn.fetchval("SELECT current_schema()"),
        )


async def _carry_ids(db: sqlite3.Connection, conn: asyncpg.Connection) -> None:
    """Sequences and id marks continue from the highest id SQLite handed out (deleted rows
    included), so no id is ever handed out twice."""
    handed_out = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for table in sorted(IDENTITY_TABLES):
        top = max(
            int(handed_out.get(table, 0) or 0),
            int(await conn.fetchval(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')),
        )
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        if top > 0:
            await conn.execute("SELECT setval($1::regclass, $2)", sequence, top)
        await conn.execute("UPDATE id_marks SET value = $2 WHERE name = $1", table, top)


def main(argv: list[str]) -> int:
    source, url = Path(argv[0]), argv[1]
    try:
        counts = asyncio.run(copy_sqlite_to_postgres(source, url))
    except CopyError as exc:
        return _fail(str(exc))
    except Exception as exc:
        if connection_lost(exc):
            return _fail(f"cannot reach {redact(url)}: {exc}")
        return _fail(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"source": str(source), "target": redact(url), "tables": counts}))
    return 0


def _fail(message: str) -> int:
    print(json.dumps({"error": message}))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

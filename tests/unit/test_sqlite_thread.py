"""The SQLite backend's connection thread: calls in order on its own thread, errors back to
their caller, close after what is queued, a connection that cannot open."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from relayd.storage.sqlite_thread import ConnectionClosed, ConnectionThread


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")  # these tests are about threads, not the disk
    return db


async def test_calls_run_in_order_on_the_connections_own_thread(tmp_path: Path) -> None:
    thread = ConnectionThread(lambda: connect(tmp_path / "x.db"), "db-test")
    await thread.start()
    try:
        await thread.call(lambda db: db.execute("CREATE TABLE t (n INTEGER)"))

        def insert(n: int) -> Callable[[sqlite3.Connection], str]:
            def on_thread(db: sqlite3.Connection) -> str:
                db.execute("INSERT INTO t VALUES (?)", (n,))
                return threading.current_thread().name
            return on_thread

        names = await asyncio.gather(*[thread.call(insert(n)) for n in range(200)])
        rows = await thread.call(lambda db: [r[0] for r in db.execute("SELECT n FROM t")])
    finally:
        await thread.close()
    assert set(names) == {"db-test"}
    assert rows == list(range(200))


async def test_an_error_reaches_its_caller_and_the_thread_goes_on(tmp_path: Path) -> None:
    thread = ConnectionThread(lambda: connect(tmp_path / "x.db"), "db-test")
    await thread.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await thread.call(lambda db: db.execute("SELECT * FROM missing"))
        assert await thread.call(lambda db: db.execute("SELECT 41 + 1").fetchone()[0]) == 42
    finally:
        await thread.close()


async def test_close_runs_what_is_queued_then_refuses(tmp_path: Path) -> None:
    thread = ConnectionThread(lambda: connect(tmp_path / "x.db"), "db-test")
    await thread.start()
    pending = asyncio.ensure_future(thread.call(lambda db: db.execute("SELECT 1").fetchone()))
    await asyncio.sleep(0)
    await thread.close()
    assert (await pending)[0] == 1
    with pytest.raises(ConnectionClosed):
        await thread.call(lambda db: None)


async def test_a_connection_that_cannot_open_fails_start(tmp_path: Path) -> None:
    thread = ConnectionThread(lambda: connect(tmp_path / "no" / "such" / "dir.db"), "db-test")
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await thread.start()

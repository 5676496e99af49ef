"""A SQLite connection and the thread that owns it (datasette's Database write thread is the
model): every call on the connection runs on that thread, in the order it was asked for, and
answers the event loop with one call_soon_threadsafe. No other thread touches the connection,
so it is opened with check_same_thread left on."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
# a call, or (None, future): close the connection, end the thread, then settle the future
Call = tuple[Callable[[sqlite3.Connection], Any] | None, asyncio.Future[Any]]


class ConnectionClosed(sqlite3.ProgrammingError):
    pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ConnectionThread:
    """`await thread.call(fn)` runs `fn(connection)` on the connection's own thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._closed = False

    async def start(self) -> None:
        """Start the thread and open the connection on it; a failure to open raises here."""
        self._thread.start()
        try:
            await self.call(lambda db: None)
        except BaseException:
            await self.close()
            raise

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise ConnectionClosed("the database connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((fn, future))
        return await future

    async def close(self) -> None:
        """Let the queued calls run, then close the connection and end the thread."""
        if self._closed or not self._thread.is_alive():  # closed, or never started
            self._closed = True
            return
        self._closed = True
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._calls.put((None, finished))
        await finished

    def _serve(self) -> None:
        try:
            db: sqlite3.Connection | None = self._connect()
            opened: BaseException | None = None
        except BaseException as exc:  # every call then fails with it
            db, opened = None, exc
        while True:
            fn, future = self._calls.get()
            if fn is None:
                break
            result, error = None, opened
            if db is not None:
                try:
                    result = fn(db)
                except BaseException as exc:  # the caller gets it, whatever it is
                    error = exc
            _answer(future, result, error)
        if db is not None:
            db.close()
        _answer(future, None, None)


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(_settle, future, result, error)

"""SQLite backend: one writer with group commit, one reader, WAL, numbered migrations.

Writes queue up as plain functions; the writer task (relayd.storage.sql_store) drains the
queue, runs the whole batch in one ``BEGIN IMMEDIATE … COMMIT`` on the connection's thread
(each operation in its own savepoint, so one failure does not sink its neighbours), and only
then answers the callers and publishes their events in commit order. With ``synchronous=FULL``
a 201 means on disk.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from relayd import private_files
from relayd.errors import unavailable
from relayd.storage.base import EventSink
from relayd.storage.sql_fanout import FanoutCache
from relayd.storage.sql_store import Op, Outcome, SqlStore, migration_files, run_batch
from relayd.storage.sqlite_guard import DatabaseFileGuard
from relayd.storage.sqlite_thread import ConnectionThread
from relayd.storage.sqlite_tx import Tx

log = logging.getLogger("relayd.storage")
T = TypeVar("T")


class SQLiteStore(SqlStore):
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        self.guard = DatabaseFileGuard(self.path)
        self._storage_problem: str | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ lifecycle

    async def open(self, sink: EventSink) -> None:
        """Open and migrate; a database that cannot be opened raises OSError (the caller
        knows nothing of sqlite3)."""
        self._sink = sink
        private_files.prepare_database(self.path)  # 0700 directory, 0600 files
        try:
            self._writer = await self._connect("sqlite-writer")
            await self._writer.call(self._migrate_sync)
            self._reader = await self._connect("sqlite-reader", "query_only = ON")
        except sqlite3.Error as exc:
            await self.close()  # the connection threads already started end here
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
        self.guard.arm()
        self._start_writer()

    async def _connect(self, name: str, *pragmas: str) -> ConnectionThread:
        """A connection on a thread of its own (opened there, used only there)."""
        thread = ConnectionThread(partial(_open, self.path, pragmas), name)
        await thread.start()
        return thread

    async def close(self) -> None:
        """Finish queued writes, then close both connections and end their threads."""
        await self._stop_writer()
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def healthy(self) -> bool:
        if self._note_problem(self.guard.problem() or self.guard.problem(after_commit=True)):
            return False
        try:
            await self._read(lambda tx: tx.scalar("SELECT 1"))
        except Exception:
            return False
        return self._writer_task is not None and not self._writer_task.done()

    # ------------------------------------------------------------------ migrations

    @staticmethod
    def _migrate_sync(db: sqlite3.Connection) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in applied:
                continue
            log.info("applying migration %04d_%s", version, name)
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
                )
                db.execute("COMMIT")
            except Exception:
                db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ backend hooks

    def _durability_problem(self, after_commit: bool) -> str | None:
        # Storage honesty: never acknowledge a write into a file that is gone, replaced or
        # read-only (it would not survive a restart). Checked before the commit, and after
        # it for a file deleted or replaced while the commit ran.
        return self._note_problem(self.guard.problem(after_commit=after_commit))

    @property
    def unhealthy_reason(self) -> str | None:
        return self._storage_problem

    def _note_problem(self, problem: str | None) -> str | None:
        """Log once when storage stops (and starts again) being durable; answer the problem."""
        if problem != self._storage_problem:
            if problem is not None:
                log.error("refusing writes: %s", problem)
            else:
                log.warning("the database file is usable again; accepting writes")
            self._storage_problem = problem
        return problem

    async def _execute_batch(self, ops: list[Op]) -> list[Outcome]:
        if self._writer is None:
            raise unavailable("storage is closed")
        outcomes: list[Outcome] = await self._writer.call(
            partial(_run_batch, ops=ops, fanout=self._fanout)
        )
        return outcomes

    async def _read(self, op: Callable[[Tx], T]) -> T:
        if self._reader is None:
            raise unavailable("storage is closed")
        result: T = await self._reader.call(partial(_run_read, op=op))
        return result

    async def backup(self, destination: Path) -> int:
        """Online backup through SQLite's backup API; returns the copy's size in bytes."""
        if self._reader is None:
            raise unavailable("storage is closed")
        destination = Path(destination)
        await self._reader.call(partial(_backup_sync, destination=destination))
        return destination.stat().st_size

    def file_size(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(f"{self.path}{suffix}")
            if candidate.exists():
                total += candidate.stat().st_size
        return total



# ---------------------------------------------------------------------- thread-side helpers


def _open(path: Path, pragmas: tuple[str, ...]) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    for pragma in (
        "journal_mode = WAL",
        "synchronous = FULL",
        "busy_timeout = 5000",
        "foreign_keys = OFF",
        "cache_size = -16000",
        *pragmas,
    ):
        db.execute(f"PRAGMA {pragma}")
    return db


class _SqliteBatch:
    __slots__ = ("db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str) -> None:
        self.db.execute(sql)

    def tx(self, fanout: FanoutCache) -> Tx:
        return Tx(self.db, fanout=fanout)


def _run_batch(db: sqlite3.Connection, ops: list[Op], fanout: FanoutCache) -> list[Outcome]:
    db.execute("BEGIN IMMEDIATE")
    try:
        outcomes = run_batch(_SqliteBatch(db), ops, fanout)
        db.execute("COMMIT")
        fanout.committed()
    except BaseException:
        fanout.rolled_back()  # it may hold audiences the rollback removes
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def _run_read(db: sqlite3.Connection, op: Callable[[Tx], T]) -> T:
    db.execute("BEGIN")
    try:
        return op(Tx(db))
    finally:
        db.execute("COMMIT")


def _backup_sync(db: sqlite3.Connection, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    target = sqlite3.connect(destination)
    try:
        db.backup(target)
    finally:
        target.close()


def _migrations() -> list[tuple[int, str, str]]:
    return migration_files("migrations")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about quotes)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        statements.append(buffer.strip())
    return statements

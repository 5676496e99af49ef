"""PostgreSQL backend (asyncpg): the same operations as SQLite, for several relayd replicas.

- Writes: one writer task per replica batches queued operations into one transaction (group
  commit, as on SQLite), each operation in a savepoint. Every write transaction first takes
  the relay's writer lock, ``pg_advisory_xact_lock(<writer key>)``, held until it commits. So
  across all replicas exactly one write transaction runs at a time: the check-then-act rules
  written once for both backends (claims, busy pairs, dedupe keys, idempotency keys) stay
  atomic, and ids taken inside it commit in id order: a reader that has seen event N has
  already seen every committed event below N (no commit-order gaps to wait for).
- One relay per schema: the lock keys and the NOTIFY channel are derived from the schema the
  tables live in (the first of the connection's search_path), so relays in other schemas of the
  same database (tests do this) never wait on each other.
- Events: stored in the same transaction; the transaction ends with ``pg_notify``. Every
  replica LISTENs, reads events after the last one it published from the table in id order,
  and publishes them to its local bus, so every SSE client on every replica sees one order
  and can resume on any replica with Last-Event-ID.
- Jobs that must run once (reaper, retention, leases, pair expiry, callback delivery) hold a
  session advisory lock on a connection of their own; when the holder dies, its connection
  closes, the lock goes with it and another replica takes the job on its next tick.
- Losing the server: operations fail with 503 (the connection is dropped and re-made on the
  next use), health says 503, SSE streams stay open and the listener reconnects by itself.

The operations (relayd/storage/sql_*.py) are synchronous; each connection here lives on its
own thread with a private event loop (relayd/storage/pg_tx.py), like SQLite's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from relayd.domain.models import Event
from relayd.domain.tasks import Delivery
from relayd.errors import conflict, unavailable
from relayd.storage import sql_callbacks, sql_events
from relayd.storage.base import EventSink, StoreUnreachable
from relayd.storage.pg_tx import IDENTITY_TABLES, PgTx
from relayd.storage.sql_fanout import FanoutCache
from relayd.storage.sql_store import Op, Outcome, SqlStore, migration_files, run_batch
from relayd.storage.sqlite_tx import Tx

log = logging.getLogger("relayd.storage")
T = TypeVar("T")

CHANNEL = "agent_relay_events"
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0
READERS = 2
TAIL_PAGE = 1000
SAFETY_POLL_SECONDS = 1.0  # the listener also looks every second, should a NOTIFY be missed
CALLBACK_LEASE_MS = 60_000  # a taken callback is not offered again for this long


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name`."""
    digest = hashlib.sha256(f"agent-relay:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)




def redact(url: str) -> str:
    """The URL without its password (for logs and status)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def connection_lost(exc: BaseException) -> bool:
    """Errors after which a connection cannot be trusted: drop it, make a new one next time."""
    return isinstance(
        exc,
        OSError  # refused, reset, timeouts (TimeoutError is an OSError)
        | asyncpg.InterfaceError  # closed / in a broken state
        | asyncpg.PostgresConnectionError  # class 08
        | asyncpg.exceptions.OperatorInterventionError  # 57: admin shutdown, starting up
        | asyncpg.exceptions.InternalClientError,
    )


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        url,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        statement_cache_size=1024,
        server_settings={"application_name": "relayd"},
    )


class PgThread:
    """One asyncpg connection on its own thread and event loop; made again after a loss."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncpg.Connection | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        loop, conn = self._connection()
        try:
            return fn(loop, conn, *args)
        except BaseException as exc:
            if connection_lost(exc) or conn.is_closed():
                self._drop()
            raise

    def _connection(self) -> tuple[asyncio.AbstractEventLoop, asyncpg.Connection]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = self._loop.run_until_complete(connect(self.url))
        return self._loop, self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is not None:
            conn.terminate()

    def _close_in_thread(self) -> None:
        conn, self._conn = self._conn, None
        if self._loop is not None:
            if conn is not None and not conn.is_closed():
                try:
                    self._loop.run_until_complete(asyncio.wait_for(conn.close(), 2.0))
                except Exception:
                    conn.terminate()
            self._loop.close()
            self._loop = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_in_thread)
        self._executor.shutdown(wait=True)


class _PgBatch:
    __slots__ = ("conn", "loop", "sequences")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, conn: asyncpg.Connection, sequences: dict[str, str]
    ) -> None:
        self.loop, self.conn, self.sequences = loop, conn, sequences

    def execute(self, sql: str) -> None:
        self.loop.run_until_complete(self.conn.execute(sql))

    def tx(self, fanout: FanoutCache) -> Tx:
        return PgTx(self.loop, self.conn, True, self.sequences, fanout=fanout)


class PostgresStore(SqlStore):
    backend = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._writer: PgThread | None = None
        self._readers: asyncio.Queue[PgThread] | None = None
        self._all_readers: list[PgThread] = []
        self._sequences: dict[str, str] = {}
        self._schema = "public"
        self._writer_key = 0
        self._channel = CHANNEL
        self._finish_sql = ""
        self._published = 0
        self._tail_wake = asyncio.Event()
        self._tail_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._jobs_conn: asyncpg.Connection | None = None
        self._jobs_lock = asyncio.Lock()
        self._held: set[str] = set()
        self.listening = False

    @property
    def location(self) -> str:
        return redact(self.url)

    def file_size(self) -> int | None:
        return None

    # ------------------------------------------------------------------ lifecycle

    async def open(self, sink: EventSink) -> None:
        self._sink = sink
        self._writer = PgThread(self.url, "pg-writer")
        try:
            self._schema, self._sequences = await self._writer.call(_migrate)
        except Exception as exc:
            if connection_lost(exc):
                raise StoreUnreachable(str(exc) or type(exc).__name__) from None
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        self._writer_key = lock_key(f"{self._schema}:writer")
        self._channel = f"{CHANNEL}:{self._schema}"
        self._finish_sql = _finish_sql(self._sequences, self._channel)
        self._readers = asyncio.Queue()
        for index in range(READERS):
            reader = PgThread(self.url, f"pg-reader-{index}")
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)
        self._published = await self._read(sql_events.latest_id)
        self._start_writer()
        self._tail_task = asyncio.create_task(self._tail(), name="pg-event-tail")
        self._listen_task = asyncio.create_task(self._listen(), name="pg-listen")

    async def close(self) -> None:
        if self._writer_task is not None:
            await self._stop_writer()
        for task in (self._listen_task, self._tail_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._listen_task = self._tail_task = None
        if self._jobs_conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._jobs_conn.close(), 2.0)
            self._jobs_conn = None
        self._held.clear()
        for thread in (self._writer, *self._all_readers):
            if thread is not None:
                await thread.close()
        self._writer, self._all_readers, self._readers = None, [], None

    async def healthy(self) -> bool:
        try:
            await asyncio.wait_for(self._read(lambda tx: tx.scalar("SELECT 1")), 3.0)
        except Exception:
            return False
        return self._writer_task is not None and not self._writer_task.done()

    async def backup(self, destination: Path) -> int:
        raise conflict(
            "invalid_state",
            "this relay stores its data in PostgreSQL: back it up with pg_dump"
            " (see docs/scaling.md)",
        )

    # ------------------------------------------------------------------ backend hooks

    async def _execute_batch(self, ops: list[Op]) -> list[Outcome]:
        if self._writer is None:
            raise unavailable("storage is closed")
        outcomes: list[Outcome] = await self._writer.call(
            _run_batch, self._writer_key, self._sequences, self._finish_sql, ops, self._fanout
        )
        return outcomes

    async def _read(self, op: Callable[[Tx], T]) -> T:
        if self._readers is None:
            raise unavailable("storage is closed")
        reader = await self._readers.get()
        try:
            return await reader.call(_run_read, self._sequences, op)
        except Exception as exc:
            if connection_lost(exc):
                raise unavailable(f"storage is not reachable: {exc}") from None
            raise
        finally:
            self._readers.put_nowait(reader)

    def _committed(self, events: list[Event]) -> None:
        # Not published from here: the tail reads them back in the one global order.
        self._tail_wake.set()

    # ------------------------------------------------------------------ events across replicas

    async def _tail(self) -> None:
        """Publish committed events, from every replica, in id order, each exactly once."""
        while True:
            await self._tail_wake.wait()
            self._tail_wake.clear()
            try:
                while True:
                    page = await self._read(partial(_tail_page, after_id=self._published))
                    if not page:
                        break
                    self._published = page[-1].id
                    self._sink(page)
                    if len(page) < TAIL_PAGE:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("event tail: %s", exc)
                await asyncio.sleep(0.2)
                self._tail_wake.set()

    def _on_notify(self, *_: Any) -> None:
        self._tail_wake.set()

    async def _listen(self) -> None:
        """LISTEN for other replicas' commits; reconnect by itself after a loss."""
        failing = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.url)
                await conn.add_listener(self._channel, self._on_notify)
                self.listening = True
                if failing:
                    log.info("storage: PostgreSQL is reachable again")
                failing = False
                self._tail_wake.set()  # whatever committed while we were not listening
                while not conn.is_closed():
                    await asyncio.sleep(SAFETY_POLL_SECONDS)
                    await conn.fetchval("SELECT 1", timeout=3.0)
                    self._tail_wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("storage: lost PostgreSQL (%s); retrying", exc)
                failing = True
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ jobs run once

    async def hold_job_lock(self, job: str) -> bool:
        """True while this replica holds `job`'s advisory lock (taking it if it is free)."""
        async with self._jobs_lock:
            try:
                if self._jobs_conn is None or self._jobs_conn.is_closed():
                    self._held.clear()
                    self._jobs_conn = None
                    self._jobs_conn = await connect(self.url)
                conn = self._jobs_conn
                if job in self._held:
                    await conn.fetchval("SELECT 1", timeout=5.0)  # alive: the lock is ours
                    return True
                taken = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)",
                    lock_key(f"{self._schema}:job:{job}"),
                    timeout=5.0,
                )
            except Exception as exc:
                log.debug("job lock %s: %s", job, exc)
                if self._jobs_conn is not None:
                    self._jobs_conn.terminate()
                self._jobs_conn = None
                self._held.clear()
                return False
            if taken:
                self._held.add(job)
                log.info("this replica now runs the %s job", job)
            return bool(taken)

    def held_jobs(self) -> list[str]:
        return sorted(self._held)

    # ------------------------------------------------------------------ callbacks

    async def due_callbacks(self, now_ms: int, limit: int) -> list[Delivery]:
        """Take due heads of the outbox (FOR UPDATE SKIP LOCKED) and lease them, so no two
        workers ever hold one delivery; a lease that runs out offers it again."""
        result: list[Delivery] = await self._write(
            partial(_take_due_callbacks, now=now_ms, limit=limit)
        )
        return result

    async def resume_callbacks(self) -> int:
        # With replicas, a starting replica must not reset deliveries another one has in
        # flight: pending rows keep their schedule, taken ones come back when their lease ends.
        return 0


# ---------------------------------------------------------------------- thread-side helpers


def _migrations() -> list[tuple[int, str, str]]:
    return migration_files("pg_migrations")


def _migrate(
    loop: asyncio.AbstractEventLoop, conn: asyncpg.Connection
) -> tuple[str, dict[str, str]]:
    """Apply missing migrations (one replica at a time); answer the schema and the names of
    the id sequences."""
    run = loop.run_until_complete
    schema = run(conn.fetchval("SELECT current_schema()"))
    if schema is None:
        raise OSError("the connection's search_path names no schema that exists")
    run(conn.execute("SELECT pg_advisory_lock($1)", lock_key(f"{schema}:migrations")))
    try:
        run(conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
        applied = {r[0] for r in run(conn.fetch("SELECT version FROM schema_migrations"))}
        for version, name, sql in _migrations():
            if version in applied:
                continue
            log.info("applying PostgreSQL migration %04d_%s", version, name)
            async def apply(sql: str = sql, version: int = version, name: str = name) -> None:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version, name,
                    )
            run(apply())
    finally:
        run(conn.execute("SELECT pg_advisory_unlock($1)", lock_key(f"{schema}:migrations")))
    sequences = {}
    for table in sorted(IDENTITY_TABLES):
        name = run(conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table))
        sequences[table] = str(name)
    return str(schema), sequences


def _finish_sql(sequences: dict[str, str], channel: str) -> str:
    """Ends a write transaction that recorded events: the committed id marks, the NOTIFY
    (delivered by PostgreSQL at commit), and COMMIT, in one round trip."""
    quoted = channel.replace("'", "''")

    def last(table: str) -> str:
        return f"(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequences[table]})"

    return (
        f"UPDATE id_marks SET value = CASE name WHEN 'messages' THEN {last('messages')}"
        f" ELSE {last('events')} END WHERE name IN ('messages', 'events');"
        f" SELECT pg_notify('{quoted}', ''); COMMIT"
    )


def _run_batch(
    loop: asyncio.AbstractEventLoop,
    conn: asyncpg.Connection,
    writer_key: int,
    sequences: dict[str, str],
    finish_sql: str,
    ops: list[Op],
    fanout: FanoutCache,
) -> list[Outcome]:
    run = loop.run_until_complete
    run(conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({writer_key})"))
    try:
        outcomes = run_batch(_PgBatch(loop, conn, sequences), ops, fanout)
        recorded = any(events for _, events, _ in outcomes)
        run(conn.execute(finish_sql if recorded else "COMMIT"))
        fanout.committed()
    except BaseException:
        fanout.rolled_back()  # it may hold audiences the rollback removes
        if not conn.is_closed() and conn.is_in_transaction():
            with contextlib.suppress(Exception):
                run(conn.execute("ROLLBACK"))
        raise
    return outcomes


def _run_read(
    loop: asyncio.AbstractEventLoop,
    conn: asyncpg.Connection,
    sequences: dict[str, str],
    op: Callable[[Tx], T],
) -> T:
    """Reads run statement by statement outside a transaction (two round trips fewer than
    BEGIN … COMMIT): each statement sees everything committed before it, and a write's rows
    (a message, its deliveries, its event) commit together, so no statement sees half a write."""
    return op(PgTx(loop, conn, False, sequences))


def _tail_page(tx: Tx, after_id: int) -> list[Event]:
    return sql_events.with_live_audiences(tx, sql_events.after(tx, after_id, TAIL_PAGE))


def _take_due_callbacks(tx: Tx, now: int, limit: int) -> list[Delivery]:
    rows = tx.all(
        """SELECT o.* FROM callback_outbox o
           WHERE o.status = 'pending' AND o.next_attempt_at <= ?
             AND NOT EXISTS (SELECT 1 FROM callback_outbox p WHERE p.task_id = o.task_id
                             AND p.status = 'pending' AND p.id < o.id)
           ORDER BY o.next_attempt_at, o.id LIMIT ?
           FOR UPDATE OF o SKIP LOCKED""",
        (now, limit),
    )
    for row in rows:
        tx.run(
            "UPDATE callback_outbox SET next_attempt_at = ? WHERE id = ?",
            (now + CALLBACK_LEASE_MS, row["id"]),
        )
    return [sql_callbacks.row_to_delivery(r) for r in rows]

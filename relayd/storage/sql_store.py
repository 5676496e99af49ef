"""What the SQL backends share: the group-commit writer queue and every Store operation.

Operations are plain functions ``op(tx) -> result`` (relayd/storage/sql_*.py) that run on a
backend's connection thread against a ``Tx``. A backend supplies ``_execute_batch`` (one
transaction for a list of writes, each in its own savepoint), ``_read`` and ``_committed``
(what to do with a batch's events once it is durable), plus its lifecycle.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from importlib import resources
from typing import Any, Protocol, TypeVar

from relayd.domain.models import Agent, Event, Message, Pair
from relayd.domain.sessions import SessionGuard
from relayd.domain.tasks import (
    Delivery,
    IngressEvent,
    IngressResult,
    StatusChange,
    Task,
    TaskEvent,
    TaskQuery,
)
from relayd.errors import ApiError, unavailable
from relayd.storage import (
    cross_table,
    sql_agents,
    sql_callbacks,
    sql_channels,
    sql_dashboard,
    sql_events,
    sql_idempotency,
    sql_messages,
    sql_pairs,
    sql_tasks,
)
from relayd.storage.base import (
    AgentFilter,
    ChannelLink,
    EventSink,
    InboxPage,
    MessageDraft,
    MessageQuery,
    SendResult,
    Store,
)
from relayd.storage.sql_fanout import FanoutCache
from relayd.storage.sqlite_tx import Tx

log = logging.getLogger("relayd.storage")
T = TypeVar("T")
Op = Callable[[Tx], Any]
MAX_BATCH = 512
Outcome = tuple[Any, list[Event], Any]  # (result, events, error)


class BulkOp:
    """An operation that may run set-based with adjacent operations of the same kind.

    ``run_many(tx, items)`` answers one result or exception per item; should it fail as a
    whole, the writer falls back to running each item's ``single`` operation on its own.
    """

    __slots__ = ("item", "run_many", "single")

    def __init__(self, run_many: Callable[[Tx, list[Any]], list[Any]], item: Any, single: Op):
        self.run_many = run_many
        self.item = item
        self.single = single

    def __call__(self, tx: Tx) -> Any:
        return self.single(tx)


class _Write:
    __slots__ = ("future", "op")

    def __init__(self, op: Op, future: asyncio.Future[Any]) -> None:
        self.op = op
        self.future = future


class BatchDb(Protocol):
    """The few things run_batch needs of a connection (called on its thread)."""

    def execute(self, sql: str) -> None: ...

    def tx(self, fanout: FanoutCache) -> Tx: ...


def run_batch(db: BatchDb, ops: list[Op], fanout: FanoutCache) -> list[Outcome]:
    """Run `ops` inside the caller's open transaction, each in a savepoint (a bulk run of
    same-kind BulkOps in one), so one failing operation does not sink its neighbours.
    `fanout` is the writer's audience cache: told of every rollback."""
    outcomes: list[Outcome] = []
    start = 0
    while start < len(ops):
        end = _bulk_run_end(ops, start)
        if end > start + 1:
            outcomes.extend(_run_bulk(db, ops[start:end], fanout))  # type: ignore[arg-type]
        else:
            outcomes.append(_run_one(db, ops[start], fanout))
        start = max(end, start + 1)
    return outcomes


def _bulk_run_end(ops: list[Op], start: int) -> int:
    """End of the run of same-kind BulkOps beginning at `start` (start itself if none)."""
    first = ops[start]
    if not isinstance(first, BulkOp):
        return start
    end = start + 1
    while end < len(ops) and getattr(ops[end], "run_many", None) is first.run_many:
        end += 1
    return end


def _run_one(db: BatchDb, op: Op, fanout: FanoutCache) -> Outcome:
    tx = db.tx(fanout)
    db.execute("SAVEPOINT op")
    try:
        result = op(tx)
    except Exception as exc:  # (a lost connection fails this rollback too: the batch fails)
        fanout.rolled_back()
        db.execute("ROLLBACK TO SAVEPOINT op")
        db.execute("RELEASE SAVEPOINT op")
        return (None, [], _client_error(exc))
    db.execute("RELEASE SAVEPOINT op")
    return (result, tx.events, None)


def _run_bulk(db: BatchDb, group: list[BulkOp], fanout: FanoutCache) -> list[Outcome]:
    tx = db.tx(fanout)
    db.execute("SAVEPOINT bulk")
    try:
        results = group[0].run_many(tx, [op.item for op in group])
    except Exception as exc:
        log.warning("set-based write failed (%r); writing one by one", exc)
        fanout.rolled_back()
        db.execute("ROLLBACK TO SAVEPOINT bulk")
        db.execute("RELEASE SAVEPOINT bulk")
        return [_run_one(db, op, fanout) for op in group]
    db.execute("RELEASE SAVEPOINT bulk")
    outcomes: list[Outcome] = []
    for index, result in enumerate(results):
        events = tx.events if index == 0 else []  # flattened in order by the caller
        if isinstance(result, Exception):
            outcomes.append((None, events, _client_error(result)))
        else:
            outcomes.append((result, events, None))
    return outcomes


def _settle(batch: list[_Write], outcomes: list[Outcome]) -> list[Event]:
    """Answer each write of a committed batch; the events the batch produced, in order."""
    events: list[Event] = []
    for write, (result, op_events, error) in zip(batch, outcomes, strict=True):
        events.extend(op_events)
        if write.future.done():
            continue
        if error is not None:
            write.future.set_exception(error)
        else:
            write.future.set_result(result)
    return events


def _client_error(exc: Exception) -> Exception:
    if isinstance(exc, ApiError):
        return exc
    log.error("storage operation failed: %r", exc)
    return unavailable("storage could not complete the operation")


def migration_files(folder_name: str) -> list[tuple[int, str, str]]:
    """(number, name, sql) of relayd/storage/<folder_name>/NNNN_name.sql, in order."""
    folder = resources.files("relayd.storage").joinpath(folder_name)
    found = []
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(".sql")
        number, _, name = stem.partition("_")
        if entry.name.endswith(".sql") and number.isdigit():
            found.append((int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def prune_history_op(tx: Tx, messages_before_ms: int, keep: int) -> dict[str, int]:
    return {
        "tasks": sql_tasks.prune_finished(tx, messages_before_ms),
        "callbacks": sql_callbacks.prune_delivered(tx, messages_before_ms),
        "messages": sql_messages.prune(tx, messages_before_ms),
        "events": sql_events.prune(tx, keep),
        "idempotencyKeys": sql_idempotency.prune(tx),
        "channelLinks": sql_channels.prune(tx, messages_before_ms),
    }


class SqlStore(Store):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._sink: EventSink = lambda events: None
        self._closing = False
        self.commits = 0
        self.committed_writes = 0
        self._fanout = FanoutCache()  # resolved audiences; used on the writer's thread only

    # ------------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    async def _execute_batch(self, ops: list[Op]) -> list[Outcome]:
        """Run `ops` in one transaction and commit; raise if the commit failed."""

    @abc.abstractmethod
    async def _read(self, op: Callable[[Tx], T]) -> T: ...

    def _durability_problem(self, after_commit: bool) -> str | None:
        """Why a batch must not be acknowledged (checked before and after the commit)."""
        return None

    def _refuse(self, batch: list[_Write], problem: str) -> None:
        for write in batch:
            if not write.future.done():
                write.future.set_exception(unavailable(f"storage is not durable: {problem}"))

    def _committed(self, events: list[Event]) -> None:
        """A batch is durable: its events go out (in commit order)."""
        self._sink(events)

    # ------------------------------------------------------------------ writer

    def _start_writer(self) -> None:
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def _stop_writer(self) -> None:
        """Finish queued writes, then stop the writer task."""
        self._closing = True
        if self._writer_task is not None:
            self._queue.put_nowait(None)
            await self._writer_task
            self._writer_task = None

    async def _write(self, op: Callable[[Tx], T]) -> T:
        if self._closing or self._writer_task is None:
            raise unavailable("the relay is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Write(op, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch: list[_Write] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                await self._commit_batch(batch)
            if stop:
                return

    async def _commit_batch(self, batch: list[_Write]) -> None:
        problem = self._durability_problem(after_commit=False)
        if problem is not None:
            self._refuse(batch, problem)
            return
        try:
            outcomes = await self._execute_batch([w.op for w in batch])
        except Exception as exc:  # the COMMIT itself failed: nothing of the batch is stored
            log.error("commit failed: %s", exc)
            for write in batch:
                if not write.future.done():
                    write.future.set_exception(unavailable(f"storage is not writable: {exc}"))
            return
        problem = self._durability_problem(after_commit=True)
        if problem is not None:
            self._refuse(batch, problem)
            return
        self.commits += 1
        self.committed_writes += len(batch)
        if self.on_commit is not None:
            self.on_commit(len(batch))
        events = _settle(batch, outcomes)
        if events:
            self._committed(events)

    async def run_write(self, op: Op) -> Any:
        """For sibling modules (tasks, pairs, callbacks): run ``op(tx)`` in a group commit."""
        return await self._write(op)

    async def run_read(self, op: Callable[[Tx], T]) -> T:
        return await self._read(op)

    # ------------------------------------------------------------------ agents

    async def register_agent(self, fields: dict[str, Any]) -> tuple[Agent, bool]:
        return await self._write(
            partial(cross_table.register_agent, fields=fields)
        )

    async def get_agent(self, agent_id: str) -> Agent | None:
        return await self._read(partial(sql_agents.get, agent_id=agent_id))

    async def list_agents(self, flt: AgentFilter) -> list[Agent]:
        return await self._read(partial(sql_agents.list_agents, flt=flt))

    async def heartbeat(self, agent_id: str, status: str | None,
                        guard: SessionGuard | None = None) -> Agent | None:
        return await self._write(
            partial(sql_agents.heartbeat, agent_id=agent_id, status=status, guard=guard)
        )

    async def update_agent(self, agent_id: str, changes: dict[str, Any],
                           guard: SessionGuard | None = None) -> Agent | None:
        return await self._write(
            partial(cross_table.update_agent, agent_id=agent_id, changes=changes, guard=guard)
        )

    async def delete_agent(self, agent_id: str) -> bool:
        return bool(await self._write(partial(cross_table.delete_agent, agent_id=agent_id)))

    # ------------------------------------------------------------------ messages

    async def send_message(self, draft: MessageDraft) -> SendResult:
        single = partial(sql_messages.send, draft=draft)
        op: Callable[[Tx], SendResult] = (
            single if draft.idempotency_key else BulkOp(sql_messages.send_many, draft, single)
        )
        return await self._write(op)

    async def get_message(self, message_id: int) -> Message | None:
        return await self._read(partial(sql_messages.get, message_id=message_id))

    async def list_messages(self, query: MessageQuery) -> list[Message]:
        return await self._read(partial(sql_messages.list_messages, query=query))

    async def inbox(self, query: MessageQuery) -> InboxPage:
        return await self._read(partial(sql_messages.inbox, query=query))

    async def latest_message_id(self) -> int:
        return await self._read(sql_messages.latest_id)

    async def thread(self, message_id: int) -> list[Message] | None:
        return await self._read(partial(sql_messages.thread, message_id=message_id))

    async def claim_message(self, message_id: int, agent_id: str) -> Message:
        return await self._write(
            partial(cross_table.claim_message, message_id=message_id, agent_id=agent_id)
        )

    async def set_read(self, message_id: int, agent_id: str, read: bool) -> Message:
        return await self._write(
            partial(sql_messages.set_read, message_id=message_id, agent_id=agent_id, read=read)
        )

    async def set_delivered(self, message_id: int, agent_id: str, delivered: bool) -> Message:
        return await self._write(partial(
            sql_messages.set_delivered, message_id=message_id, agent_id=agent_id,
            delivered=delivered,
        ))

    async def delete_message(self, message_id: int) -> bool:
        return bool(await self._write(partial(sql_messages.delete, message_id=message_id)))

    # ------------------------------------------------------------------ events

    async def events_after(
        self,
        after_id: int,
        limit: int,
        max_bytes: int | None = None,
        reader: str | None = None,
    ) -> list[Event]:
        return await self._read(partial(
            sql_events.after, after_id=after_id, limit=limit, max_bytes=max_bytes, reader=reader
        ))

    async def latest_event_id(self) -> int:
        return await self._read(sql_events.latest_id)

    # ------------------------------------------------------------------ maintenance

    async def mark_stale(self, last_seen_before_ms: int) -> list[Agent]:
        return await self._write(
            partial(sql_agents.mark_stale, last_seen_before_ms=last_seen_before_ms)
        )

    async def prune_offline(self, offline_before_ms: int) -> list[str]:
        return await self._write(
            partial(cross_table.prune_offline, offline_before_ms=offline_before_ms)
        )

    async def prune_history(self, messages_before_ms: int, keep_events: int) -> dict[str, int]:
        return await self._write(
            partial(prune_history_op, messages_before_ms=messages_before_ms, keep=keep_events)
        )

    async def stats(self) -> dict[str, Any]:
        return await self._read(sql_events.stats)

    # ---- pairs (relayd/storage/sql_pairs.py) ------------------------------------------------

    async def create_pair(
        self, initiator: str, to: str, objective: str | None, idempotency_key: str | None = None,
        sent_by: str | None = None,
    ) -> tuple[Pair, bool]:
        return await self._write(
            partial(
                sql_pairs.create,
                initiator=initiator,
                to=to,
                objective=objective,
                idempotency_key=idempotency_key,
                sent_by=sent_by,
            )
        )

    async def get_pair(self, pair_id: int) -> Pair | None:
        return await self._read(partial(sql_pairs.get, pair_id=pair_id))

    async def list_pairs(
        self, agent: str | None, statuses: Sequence[str] | None, limit: int
    ) -> list[Pair]:
        return await self._read(
            partial(sql_pairs.list_pairs, agent=agent, statuses=statuses, limit=limit)
        )

    async def pair_action(self, pair_id: int, action: str, agent: str, reason: str | None) -> Pair:
        return await self._write(
            partial(sql_pairs.act, pair_id=pair_id, action=action, agent=agent, reason=reason)
        )

    async def send_pair_message(
        self, pair_id: int, sender: str, body: str, idempotency_key: str | None,
        sent_by: str | None = None,
    ) -> SendResult:
        return await self._write(
            partial(
                sql_pairs.send_message,
                pair_id=pair_id,
                sender=sender,
                body=body,
                idempotency_key=idempotency_key,
                sent_by=sent_by,
            )
        )

    async def reap_pairs(self, pending_ttl_ms: int) -> dict[str, list[Pair]]:
        return await self._write(
            partial(sql_pairs.reap, pending_ttl_ms=pending_ttl_ms)
        )

    async def pair_counts(self) -> dict[str, int]:
        return await self._read(sql_pairs.counts)

    # ---- end pairs ----------------------------------------------------------------------------

    # ---- tasks, integrations, callbacks (sql_tasks.py, sql_callbacks.py) --------------------

    async def ingest_event(self, event: IngressEvent) -> IngressResult:
        return await self._write(partial(sql_tasks.ingest, event=event))

    async def get_task(self, task_id: int) -> Task | None:
        return await self._read(partial(sql_tasks.get, task_id=task_id))

    async def list_tasks(self, query: TaskQuery) -> list[Task]:
        return await self._read(partial(sql_tasks.list_tasks, query=query))

    async def task_events(self, task_id: int) -> list[TaskEvent] | None:
        return await self._read(partial(sql_tasks.events, task_id=task_id))

    async def claim_task(self, task_id: int, agent_id: str) -> Task:
        return await self._write(
            partial(cross_table.claim_task, task_id=task_id, agent_id=agent_id)
        )

    async def change_task_status(self, task_id: int, change: StatusChange) -> Task:
        return await self._write(
            partial(sql_tasks.change_status, task_id=task_id, change=change)
        )

    async def expire_task_leases(self, silent_before_ms: int) -> list[Task]:
        return await self._write(
            partial(sql_tasks.expire_leases, silent_before_ms=silent_before_ms)
        )

    async def task_stats(self) -> dict[str, Any]:
        return await self._read(sql_tasks.stats)

    async def integrations_seen(self) -> dict[str, dict[str, Any]]:
        return await self._read(sql_tasks.integrations_seen)

    async def channel_usage(self) -> list[dict[str, Any]]:
        return await self._read(sql_tasks.channel_usage)

    async def due_callbacks(self, now_ms: int, limit: int) -> list[Delivery]:
        return await self._read(partial(sql_callbacks.due, now=now_ms, limit=limit))

    async def next_callback_due_at(self, after_ms: int) -> int | None:
        return await self._read(partial(sql_callbacks.next_due_at, after=after_ms))

    async def resume_callbacks(self) -> int:
        return int(await self._write(sql_callbacks.resume))

    async def callback_delivered(self, row_id: int, http_status: int) -> None:
        await self._write(
            partial(sql_callbacks.delivered, row_id=row_id, http_status=http_status)
        )

    async def callback_failed(
        self, row_id: int, error: str, http_status: int | None, max_attempts: int, retry_at: int
    ) -> str:
        return str(
            await self._write(
                partial(
                    cross_table.callback_failed,
                    row_id=row_id,
                    error=error,
                    http_status=http_status,
                    max_attempts=max_attempts,
                    retry_at=retry_at,
                )
            )
        )

    async def callback_summary(self) -> dict[str, dict[str, Any]]:
        return await self._read(sql_callbacks.summary)

    # ---- end tasks ----------------------------------------------------------------------------

    # ---- for people watching (sql_dashboard.py) ---------------------------------------------

    async def message_deliveries(
        self, message_ids: list[int]
    ) -> dict[int, list[tuple[str, int | None]]]:
        return await self._read(partial(sql_dashboard.deliveries, message_ids=message_ids))

    async def message_rate(self, until_ms: int, bucket_ms: int, buckets: int) -> list[int]:
        return await self._read(partial(
            sql_dashboard.message_rate, until_ms=until_ms, bucket_ms=bucket_ms, buckets=buckets
        ))

    # ---- channels (sql_channels.py) ---------------------------------------------------------

    async def channel_state(self, channel: str, key: str) -> str | None:
        return await self._read(partial(sql_channels.get_state, channel=channel, key=key))

    async def set_channel_state(self, channel: str, key: str, value: str) -> None:
        await self._write(partial(sql_channels.set_state, channel=channel, key=key, value=value))

    async def channel_receive(
        self,
        channel: str,
        draft: MessageDraft,
        links: list[tuple[str, str]],
        state: dict[str, str],
    ) -> SendResult:
        return await self._write(
            partial(sql_channels.receive, channel=channel, draft=draft, links=links, state=state)
        )

    async def channel_link(self, channel: str, link: ChannelLink) -> None:
        await self._write(partial(sql_channels.link, channel=channel, item=link))

    async def channel_message_for(self, channel: str, chat: str, external_id: str) -> int | None:
        return await self._read(
            partial(sql_channels.find_message, channel=channel, chat=chat, external_id=external_id)
        )

    async def channel_links_of(
        self, channel: str, message_id: int, chat: str
    ) -> list[ChannelLink]:
        return await self._read(
            partial(sql_channels.links_of, channel=channel, message_id=message_id, chat=chat)
        )

    # ---- end channels -------------------------------------------------------------------------

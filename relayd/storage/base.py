"""The Store interface: everything the rest of relayd may ask of storage.

A backend (SQLite now; PostgreSQL later) implements this and nothing else knows SQL. Writes
record their events in the same transaction and hand them, committed and in commit order, to the
event sink (the bus).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relayd.domain.models import Agent, Event, Message, Pair
from relayd.domain.sessions import SessionGuard
from relayd.domain.targets import Target
from relayd.domain.tasks import (
    Delivery,
    IngressEvent,
    IngressResult,
    StatusChange,
    Task,
    TaskEvent,
    TaskQuery,
)

EventSink = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class AgentFilter:
    tag: str | None = None
    machine: str | None = None
    status: str | None = None
    capability: str | None = None
    exclude_offline: bool = False


@dataclass(frozen=True)
class MessageDraft:
    sender: str
    to: str
    body: str
    subject: str | None = None
    channel: str | None = None
    reply_to: int | None = None
    claimable: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    # the principal that authenticated the send: admin, integration:<name>, local
    sent_by: str | None = None
    # `to`, parsed by whoever validated it, so the store does not parse it again
    target: Target | None = field(default=None, repr=False, compare=False)

    def fingerprint_parts(self) -> tuple[Any, ...]:
        """What an Idempotency-Key binds: everything the sender asked for."""
        return (self.to, self.body, self.subject, self.channel, self.reply_to,
                self.claimable, self.meta)


@dataclass(frozen=True)
class SendResult:
    message: Message
    recipients: list[str]
    created: bool  # False: an Idempotency-Key replay of an earlier send
    # the message and its recipients as JSON, when the store already encoded them
    message_json: str | None = None
    recipients_json: str | None = None

    def payload(self) -> dict[str, Any]:
        return {**self.message.to_json(), "recipients": self.recipients}


@dataclass(frozen=True)
class ChannelLink:
    """A chat message (`external_id` in `chat`) that stands for relay message `message_id`."""

    chat: str
    external_id: str
    message_id: int
    part: int = 0


@dataclass(frozen=True)
class MessageQuery:
    reader: str | None = None
    unread: bool = False
    undelivered: bool = False
    since: int | None = None
    limit: int = 100
    channel: str | None = None
    sender: str | None = None
    thread: int | None = None
    descending: bool = False


@dataclass(frozen=True)
class InboxPage:
    """One inbox read: whether the reader is registered, its page, the latest message id."""

    registered: bool
    messages: list[Message]
    latest_id: int


class StoreUnreachable(OSError):
    """open(): the database server does not answer (PostgreSQL down, wrong host or port)."""


class Store(abc.ABC):
    """Storage for one relay. Methods raise relayd.errors.ApiError for client mistakes."""

    backend: str = "sqlite"  # which backend this is (status, stats)
    commits: int = 0  # group commits so far (this process)
    committed_writes: int = 0  # writes those commits held

    @abc.abstractmethod
    def file_size(self) -> int | None:
        """On-disk size of the database as this process can tell (None: not known cheaply)."""

    async def hold_job_lock(self, job: str) -> bool:
        """May this process run a once-only job (reaper, retention, callbacks) now? One SQLite
        relay is one process, so always; replicas on a shared database would take turns."""
        return True

    # called with the number of writes after each group commit (for /metrics)
    on_commit: Callable[[int], None] | None = None

    def held_jobs(self) -> list[str]:
        """The once-only jobs this process holds (for status)."""
        return []

    def describe(self) -> dict[str, Any]:
        """What `relayctl status` shows about the storage (never a password)."""
        return {"backend": self.backend, "location": self.location, "sizeBytes": self.file_size()}

    @abc.abstractmethod
    async def open(self, sink: EventSink) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def healthy(self) -> bool: ...

    @property
    def unhealthy_reason(self) -> str | None:
        """Why the last health check or write found storage unusable (None: no known reason)."""
        return None

    # agents
    @abc.abstractmethod
    async def register_agent(self, fields: dict[str, Any]) -> tuple[Agent, bool]: ...

    @abc.abstractmethod
    async def get_agent(self, agent_id: str) -> Agent | None: ...

    @abc.abstractmethod
    async def list_agents(self, flt: AgentFilter) -> list[Agent]: ...

    @abc.abstractmethod
    async def heartbeat(self, agent_id: str, status: str | None,
                        guard: SessionGuard | None = None) -> Agent | None:
        """Refresh lastSeenAt (and status); None for unknown ids; 409 when the guard's session
        was taken over."""

    @abc.abstractmethod
    async def update_agent(self, agent_id: str, changes: dict[str, Any],
                           guard: SessionGuard | None = None) -> Agent | None: ...

    @abc.abstractmethod
    async def delete_agent(self, agent_id: str) -> bool: ...

    # messages
    @abc.abstractmethod
    async def send_message(self, draft: MessageDraft) -> SendResult: ...

    @abc.abstractmethod
    async def get_message(self, message_id: int) -> Message | None: ...

    @abc.abstractmethod
    async def list_messages(self, query: MessageQuery) -> list[Message]: ...

    @abc.abstractmethod
    async def latest_message_id(self) -> int: ...

    async def inbox(self, query: MessageQuery) -> InboxPage:
        """GET /messages in one read where the backend can (a poll is three reads otherwise).
        `messages` is empty when the reader is not registered."""
        if query.reader is not None and await self.get_agent(query.reader) is None:
            return InboxPage(False, [], 0)
        messages = await self.list_messages(query)
        latest = 0 if messages else await self.latest_message_id()
        return InboxPage(True, messages, latest)

    @abc.abstractmethod
    async def thread(self, message_id: int) -> list[Message] | None: ...

    @abc.abstractmethod
    async def claim_message(self, message_id: int, agent_id: str) -> Message: ...

    @abc.abstractmethod
    async def set_read(self, message_id: int, agent_id: str, read: bool) -> Message: ...

    @abc.abstractmethod
    async def set_delivered(self, message_id: int, agent_id: str, delivered: bool) -> Message:
        """Record that agent_id's provider delivered the message into its session."""

    @abc.abstractmethod
    async def delete_message(self, message_id: int) -> bool: ...

    # events
    @abc.abstractmethod
    async def events_after(
        self,
        after_id: int,
        limit: int,
        max_bytes: int | None = None,
        reader: str | None = None,
    ) -> list[Event]:
        """Up to `limit` events after `after_id`, stopping once their JSON reaches `max_bytes`
        (always at least one event). With `reader`, only the events that agent sees (a
        message's recipients are resolved here, by a join, not copied into each event)."""

    @abc.abstractmethod
    async def latest_event_id(self) -> int: ...

    # ---- pairs (relayd/storage/sql_pairs.py) ------------------------------------------------
    @abc.abstractmethod
    async def create_pair(
        self, initiator: str, to: str, objective: str | None, idempotency_key: str | None = None,
        sent_by: str | None = None,
    ) -> tuple[Pair, bool]: ...

    @abc.abstractmethod
    async def get_pair(self, pair_id: int) -> Pair | None: ...

    @abc.abstractmethod
    async def list_pairs(
        self, agent: str | None, statuses: Sequence[str] | None, limit: int
    ) -> list[Pair]: ...

    @abc.abstractmethod
    async def pair_action(
        self, pair_id: int, action: str, agent: str, reason: str | None
    ) -> Pair: ...

    @abc.abstractmethod
    async def send_pair_message(
        self, pair_id: int, sender: str, body: str, idempotency_key: str | None,
        sent_by: str | None = None,
    ) -> SendResult: ...

    @abc.abstractmethod
    async def reap_pairs(self, pending_ttl_ms: int) -> dict[str, list[Pair]]: ...

    @abc.abstractmethod
    async def pair_counts(self) -> dict[str, int]: ...

    # ---- end pairs ----------------------------------------------------------------------------

    # maintenance (the reaper and the control plane)
    @abc.abstractmethod
    async def mark_stale(self, last_seen_before_ms: int) -> list[Agent]: ...

    @abc.abstractmethod
    async def prune_offline(self, offline_before_ms: int) -> list[str]: ...

    @abc.abstractmethod
    async def prune_history(self, messages_before_ms: int, keep_events: int) -> dict[str, int]: ...

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def backup(self, destination: Path) -> int: ...

    @property
    @abc.abstractmethod
    def location(self) -> str: ...

    # for storage-level tests and tools: run `op(tx)` on a read or write transaction
    @abc.abstractmethod
    async def run_read(self, op: Callable[[Any], Any]) -> Any: ...

    @abc.abstractmethod
    async def run_write(self, op: Callable[[Any], Any]) -> Any: ...

    # ---- tasks, integrations, callbacks (storage/sql_tasks.py, sql_callbacks.py) ------------
    @abc.abstractmethod
    async def ingest_event(self, event: IngressEvent) -> IngressResult: ...

    @abc.abstractmethod
    async def get_task(self, task_id: int) -> Task | None: ...

    @abc.abstractmethod
    async def list_tasks(self, query: TaskQuery) -> list[Task]: ...

    @abc.abstractmethod
    async def task_events(self, task_id: int) -> list[TaskEvent] | None: ...

    @abc.abstractmethod
    async def claim_task(self, task_id: int, agent_id: str) -> Task: ...

    @abc.abstractmethod
    async def change_task_status(self, task_id: int, change: StatusChange) -> Task: ...

    @abc.abstractmethod
    async def expire_task_leases(self, silent_before_ms: int) -> list[Task]: ...

    @abc.abstractmethod
    async def task_stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def integrations_seen(self) -> dict[str, dict[str, Any]]: ...

    @abc.abstractmethod
    async def channel_usage(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def due_callbacks(self, now_ms: int, limit: int) -> list[Delivery]: ...

    @abc.abstractmethod
    async def next_callback_due_at(self, after_ms: int) -> int | None: ...

    @abc.abstractmethod
    async def resume_callbacks(self) -> int: ...

    @abc.abstractmethod
    async def callback_delivered(self, row_id: int, http_status: int) -> None: ...

    @abc.abstractmethod
    async def callback_failed(
        self, row_id: int, error: str, http_status: int | None, max_attempts: int, retry_at: int
    ) -> str: ...

    @abc.abstractmethod
    async def callback_summary(self) -> dict[str, dict[str, Any]]: ...

    # ---- end tasks ----------------------------------------------------------------------------

    # ---- for people watching (relayd/storage/sql_dashboard.py) --------------------------------
    @abc.abstractmethod
    async def message_deliveries(
        self, message_ids: list[int]
    ) -> dict[int, list[tuple[str, int | None]]]:
        """Per message: (recipient, read_at ms or None), recipients in id order."""

    @abc.abstractmethod
    async def message_rate(self, until_ms: int, bucket_ms: int, buckets: int) -> list[int]:
        """Messages created per interval, the `buckets` intervals ending at `until_ms`."""

    # ---- channels (relayd/storage/sql_channels.py) -------------------------------------------
    @abc.abstractmethod
    async def channel_state(self, channel: str, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_channel_state(self, channel: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    async def channel_receive(
        self,
        channel: str,
        draft: MessageDraft,
        links: list[tuple[str, str]],
        state: dict[str, str],
    ) -> SendResult:
        """Send `draft`, link it to the chat messages `links` ((chat, external id) pairs) and
        set the channel's `state` keys, all in one transaction."""

    @abc.abstractmethod
    async def channel_link(self, channel: str, link: ChannelLink) -> None: ...

    @abc.abstractmethod
    async def channel_message_for(self, channel: str, chat: str, external_id: str) -> int | None:
        """The relay message a chat message stands for, or None."""

    @abc.abstractmethod
    async def channel_links_of(
        self, channel: str, message_id: int, chat: str
    ) -> list[ChannelLink]: ...

    # ---- end channels ---------------------------------------------------------------------------

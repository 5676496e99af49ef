"""Plain records shared by the storage layer, the rules and the HTTP handlers."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

AGENT_STATUSES = ("online", "busy", "idle", "offline")
APPROVALS = ("open", "guarded", "read-only")


def now_ms() -> int:
    return int(time.time() * 1000)


_iso_second: tuple[int, str] = (-1, "")


def iso(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds and Z; the per-second prefix is cached (hot path)."""
    global _iso_second
    if ms is None:
        return None
    second = ms // 1000
    cached_second, prefix = _iso_second
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _iso_second = (second, prefix)
    return f"{prefix}{ms % 1000:03d}Z"


@dataclass
class Agent:
    id: str
    label: str | None = None
    machine: str | None = None
    project: str | None = None
    provider: str | None = None
    tags: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=lambda: ["chat"])
    channels: list[str] = field(default_factory=lambda: ["*"])
    status: str = "online"
    approval: str = "open"
    meta: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    registered_at: int = 0
    last_seen_at: int = 0
    epoch: int = 1  # grows each time a new provider instance takes the agent over
    instance_id: str | None = None  # the provider instance that holds the current epoch

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "machine": self.machine,
            "project": self.project,
            "provider": self.provider,
            "tags": self.tags,
            "capabilities": self.capabilities,
            "channels": self.channels,
            "status": self.status,
            "approval": self.approval,
            "meta": self.meta,
            "version": self.version,
            "registeredAt": iso(self.registered_at),
            "lastSeenAt": iso(self.last_seen_at),
            "epoch": self.epoch,
            "instanceId": self.instance_id,
        }

    def subscribes(self, channel: str | None) -> bool:
        return channel is None or "*" in self.channels or channel in self.channels


@dataclass
class Message:
    id: int
    sender: str
    to: str
    body: str
    subject: str | None = None
    channel: str | None = None
    reply_to: int | None = None
    thread_id: int | None = None
    claimable: bool = False
    claimed_by: str | None = None
    claimed_at: int | None = None
    created_at: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    task_id: int | None = None
    sent_by: str | None = None  # the authenticated principal; `sender` is a free name
    read_at: int | None = None  # for one reader, in inbox listings
    delivered_at: int | None = None  # for one reader: when its provider delivered it
    reader: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "channel": self.channel,
            "replyTo": self.reply_to,
            "threadId": self.thread_id,
            "claimable": self.claimable,
            "claimedBy": self.claimed_by,
            "claimedAt": iso(self.claimed_at),
            "createdAt": iso(self.created_at),
            "meta": self.meta,
            "sentBy": self.sent_by,
        }
        if self.task_id is not None:
            data["taskId"] = self.task_id
        if self.reader is not None:
            data["read"] = self.read_at is not None
            data["readAt"] = iso(self.read_at)
            data["delivered"] = self.delivered_at is not None
            data["deliveredAt"] = iso(self.delivered_at)
        return data


class Recipients(Collection[str]):
    """The recipients of a message fanned out through a shared audience, without a copy:
    the audience's members other than the sender, plus any agents listed in `extra` (late
    deliveries, a task's holder). What live events check `?for=` readers against."""

    __slots__ = ("exclude", "extra", "members")

    def __init__(
        self, members: frozenset[str], exclude: str | None, extra: frozenset[str] = frozenset()
    ) -> None:
        self.members = members
        self.exclude = exclude
        self.extra = extra

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self.extra or (agent_id != self.exclude and agent_id in self.members)

    def __iter__(self) -> Iterator[str]:  # O(members): prefer `in`
        yield from self.extra
        for agent_id in self.members:
            if agent_id != self.exclude and agent_id not in self.extra:
                yield agent_id

    def __len__(self) -> int:
        listed = len(self.members) - (self.exclude in self.members)
        return listed + sum(1 for a in self.extra if a not in self.members or a == self.exclude)


@dataclass
class Event:
    """One entry of the event log: what SSE streams and Last-Event-ID replays."""

    id: int
    type: str
    data: dict[str, Any]
    audience: Collection[str] | None  # None: every agent sees it
    created_at: int = 0
    data_json: str | None = field(default=None, repr=False, compare=False)
    # read from the log: the message whose recipients see it (`audience` is then only the
    # agents listed besides them, or the replay's reader); live events carry a lookup instead
    of_message: int | None = field(default=None, compare=False)
    # the event as a transport sends it, kept by that transport (relayd/http/sse.py encodes
    # each event once, however many streams send it)
    wire: bytes | None = field(default=None, repr=False, compare=False)

    def visible_to(self, agent_id: str | None) -> bool:
        return agent_id is None or self.audience is None or agent_id in self.audience


@dataclass
class Pair:
    """A pair session between an initiator and its partner (rules in relayd.domain.pairs)."""

    id: int
    status: str
    initiator: str
    partner: str
    objective: str | None = None
    created_at: int = 0
    accepted_at: int | None = None
    ended_at: int | None = None
    ended_by: str | None = None
    reason: str | None = None
    invite_message_id: int | None = None

    @property
    def participants(self) -> list[str]:
        return [self.initiator, self.partner]

    def other(self, agent_id: str) -> str:
        return self.partner if agent_id == self.initiator else self.initiator

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "initiator": self.initiator,
            "partner": self.partner,
            "objective": self.objective,
            "createdAt": iso(self.created_at),
            "acceptedAt": iso(self.accepted_at),
            "endedAt": iso(self.ended_at),
            "endedBy": self.ended_by,
            "reason": self.reason,
            "inviteMessageId": self.invite_message_id,
        }

"""Tasks: the record, the status machine (a plain table), and the ingress/update drafts.

Pure data and rules, shared by every storage backend and the HTTP handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relayd.domain.models import iso

STATUSES = ("open", "claimed", "in_progress", "blocked", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})
HELD = frozenset({"claimed", "in_progress", "blocked"})  # someone holds the claim

# PATCH /tasks/:id/status: where each status may go. "open -> claimed" only happens through a
# claim (POST /tasks/:id/claim or claiming the task's message), never through PATCH; a holder
# moving back to "open" gives the claim up. Repeating the current held status reports progress.
# Finished statuses are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"cancelled", "done"}),
    "claimed": frozenset({"open", "claimed", "in_progress", "blocked", *FINISHED}),
    "in_progress": frozenset({"open", "in_progress", "blocked", *FINISHED}),
    "blocked": frozenset({"open", "blocked", "in_progress", *FINISHED}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

# Lease: how a held task goes back to "open" when its holder disappears.
LEASED_BY_SILENCE = frozenset({"claimed", "in_progress"})  # blocked waits on purpose
LEASED_BY_OFFLINE = HELD

# Callback event names (the X-Agent-Relay-Event header and the body's "event").
CB_CREATED = "task.created"
CB_OCCURRENCE = "task.occurrence"
CB_CLAIMED = "task.claimed"
CB_STATUS = "task.status_changed"
CB_RESOLVED = "task.resolved"
CB_RELEASED = "task.released"
CB_LEASE_EXPIRED = "task.lease_expired"


def transition_error(current: str, wanted: str) -> str | None:
    """Why `current -> wanted` is refused, or None when the machine allows it."""
    if current in FINISHED:
        return f"the task is {current}; finished tasks are final"
    if current == "open" and wanted in HELD:
        return "an open task must be claimed first (POST /api/tasks/:id/claim)"
    if wanted not in TRANSITIONS[current]:
        return f"a task cannot go from {current} to {wanted}"
    return None


@dataclass
class Task:
    id: int
    source: str
    type: str
    title: str
    target: str
    severity: str | None = None
    dedupe_key: str | None = None
    body: str | None = None
    channel: str | None = None
    status: str = "open"
    claimed_by: str | None = None
    claimed_at: int | None = None
    progress: Any = None
    result: Any = None
    occurrence_count: int = 1
    first_seen_at: int = 0
    last_seen_at: int = 0
    created_at: int = 0
    updated_at: int = 0
    message_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    lease_renewed_at: int | None = None
    callbacks: bool = False  # its source had a callbackUrl when it was created

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "severity": self.severity,
            "dedupeKey": self.dedupe_key,
            "title": self.title,
            "body": self.body,
            "target": self.target,
            "channel": self.channel,
            "status": self.status,
            "claimedBy": self.claimed_by,
            "claimedAt": iso(self.claimed_at),
            "progress": self.progress,
            "result": self.result,
            "occurrenceCount": self.occurrence_count,
            "firstSeenAt": iso(self.first_seen_at),
            "lastSeenAt": iso(self.last_seen_at),
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "messageId": self.message_id,
            "meta": self.meta,
        }


@dataclass
class TaskEvent:
    id: int
    task_id: int
    type: str
    actor: str | None
    data: dict[str, Any]
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "taskId": self.task_id,
            "type": self.type,
            "actor": self.actor,
            "data": self.data,
            "createdAt": iso(self.created_at),
        }


@dataclass(frozen=True)
class IngressEvent:
    """One validated POST /integrations/events body, with who sent it."""

    source: str
    type: str
    title: str | None
    target: str | None
    body: str | None = None
    severity: str | None = None
    dedupe_key: str | None = None
    channel: str | None = None
    status: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    callbacks: bool = False
    sent_by: str | None = None  # the principal that posted it (admin, integration:<name>, local)

    def fingerprint_parts(self) -> tuple[Any, ...]:
        """What an Idempotency-Key binds: everything the event asked for."""
        return (self.type, self.title, self.target, self.body, self.severity,
                self.dedupe_key, self.channel, self.status, self.meta)

    @property
    def resolves(self) -> bool:
        return self.status == "resolved"


@dataclass(frozen=True)
class IngressResult:
    task: Task
    outcome: str  # "created", "occurrence", "resolved"
    replayed: bool = False

    @property
    def deduped(self) -> bool:
        return self.outcome == "occurrence"


@dataclass(frozen=True)
class StatusChange:
    agent: str
    status: str
    progress: Any = None
    result: Any = None
    has_progress: bool = False
    has_result: bool = False


@dataclass(frozen=True)
class TaskQuery:
    status: str | None = None
    source: str | None = None
    target: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class Delivery:
    """One callback delivery in the outbox."""

    id: int
    delivery_id: str
    integration: str
    task_id: int
    event: str
    body: str
    attempts: int
    status: str = "pending"

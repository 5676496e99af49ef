"""Task operations (run on the SQLite writer or reader thread).

Every lifecycle change happens in one writer operation that also records the task event, the
SSE event and (for sources with a callbackUrl) the callback outbox row, so none of them can be
lost or duplicated relative to the change.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from relayd.domain import tasks as rules
from relayd.domain.targets import parse_target
from relayd.domain.tasks import (
    IngressEvent,
    IngressResult,
    StatusChange,
    Task,
    TaskEvent,
    TaskQuery,
)
from relayd.errors import conflict, forbidden, not_found
from relayd.storage import (
    sql_agents,
    sql_callbacks,
    sql_fanout,
    sql_idempotency,
    sql_messages,
)
from relayd.storage.base import MessageDraft
from relayd.storage.sqlite_tx import Tx, dumps, loads, placeholders, sql_list

IDEMPOTENCY_SCOPE = "integration-event"
# Word for word the predicate of the partial index tasks_active_dedupe (0002_tasks.sql):
# SQLite uses a partial index only when the query repeats its condition, so the order matters.
FINISHED_SQL = "('done', 'failed', 'cancelled')"
ACTIVE_BY_DEDUPE_SQL = (
    f"SELECT * FROM tasks WHERE source = ? AND dedupe_key = ? AND status NOT IN {FINISHED_SQL}"
)


def row_to_task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"],
        source=row["source"],
        type=row["type"],
        severity=row["severity"],
        dedupe_key=row["dedupe_key"],
        title=row["title"],
        body=row["body"],
        target=row["target"],
        channel=row["channel"],
        status=row["status"],
        claimed_by=row["claimed_by"],
        claimed_at=row["claimed_at"],
        progress=loads(row["progress"], None),
        result=loads(row["result"], None),
        occurrence_count=row["occurrence_count"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_id=row["message_id"],
        meta=loads(row["meta"], {}),
        lease_renewed_at=row["lease_renewed_at"],
        callbacks=bool(row["callbacks"]),
    )


def get(tx: Tx, task_id: int) -> Task | None:
    row = tx.one("SELECT * FROM tasks WHERE id = ?", (task_id,))
    return None if row is None else row_to_task(row)


def require(tx: Tx, task_id: int) -> Task:
    task = get(tx, task_id)
    if task is None:
        raise not_found(f"task {task_id} does not exist")
    return task


def _save(tx: Tx, task: Task) -> None:
    task.updated_at = tx.now
    tx.run(
        """UPDATE tasks SET status = ?, claimed_by = ?, claimed_at = ?, progress = ?,
               result = ?, occurrence_count = ?, last_seen_at = ?, updated_at = ?,
               lease_renewed_at = ?, message_id = ?
           WHERE id = ?""",
        (
            task.status,
            task.claimed_by,
            task.claimed_at,
            None if task.progress is None else dumps(task.progress),
            None if task.result is None else dumps(task.result),
            task.occurrence_count,
            task.last_seen_at,
            task.updated_at,
            task.lease_renewed_at,
            task.message_id,
            task.id,
        ),
    )


def add_event(
    tx: Tx, task_id: int, type_: str, actor: str | None, data: dict[str, Any] | None = None
) -> None:
    tx.run(
        "INSERT INTO task_events (task_id, type, actor, data, created_at) VALUES (?, ?, ?, ?, ?)",
        (task_id, type_, actor, dumps(data or {}), tx.now),
    )


def _emit(tx: Tx, type_: str, task: Task) -> None:
    """The task's SSE event: its holder is listed, its message's recipients referred to."""
    holder = [] if task.claimed_by is None else [task.claimed_by]
    if task.message_id is None:
        tx.emit(type_, task.to_json(), holder)
        return
    tx.emit(
        type_,
        task.to_json(),
        holder or None,
        of_message=task.message_id,
        live=sql_fanout.live_recipients(tx, task.message_id, holder),
    )


def _record(
    tx: Tx,
    task: Task,
    *,
    event: str,
    actor: str | None,
    data: dict[str, Any] | None = None,
    callback: str | None = None,
    sse: str = "task.updated",
) -> None:
    """The task event, the SSE event and the callback of one lifecycle change."""
    add_event(tx, task.id, event, actor, data)
    _emit(tx, sse, task)
    if callback is not None and task.callbacks:
        sql_callbacks.enqueue(tx, task, callback)


# ------------------------------------------------------------------------------ ingress


def ingest(tx: Tx, event: IngressEvent) -> IngressResult:
    print_ = sql_idempotency.fingerprint(*event.fingerprint_parts())
    if event.idempotency_key is not None:
        replay = _replay(tx, event.source, event.idempotency_key, print_)
        if replay is not None:
            return replay
    if event.resolves:
        result = _resolve(tx, event)
    else:
        active = _active_by_dedupe(tx, event.source, event.dedupe_key)
        result = _occurrence(tx, active, event) if active else _create(tx, event)
    _observe(tx, event.source, result.outcome)
    if event.idempotency_key is not None:
        sql_idempotency.remember(
            tx, IDEMPOTENCY_SCOPE, event.source, event.idempotency_key, result.task.id, print_
        )
    return result


def _replay(tx: Tx, source: str, key: str, print_: str) -> IngressResult | None:
    ref = sql_idempotency.find(tx, IDEMPOTENCY_SCOPE, source, key, print_)
    task = None if ref is None else get(tx, ref)
    if task is None:
        return None
    outcome = tx.scalar(
        "SELECT type FROM task_events WHERE task_id = ?"
        f" AND {tx.json_text('data', 'idempotencyKey')} = ? ORDER BY id LIMIT 1",
        (task.id, key),
    )
    return IngressResult(task, str(outcome or "created"), replayed=True)


def _active_by_dedupe(tx: Tx, source: str, dedupe_key: str | None) -> Task | None:
    if dedupe_key is None:
        return None
    row = tx.one(ACTIVE_BY_DEDUPE_SQL, (source, dedupe_key))
    return None if row is None else row_to_task(row)


def _event_data(event: IngressEvent, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": event.type, **extra}
    if event.severity is not None:
        data["severity"] = event.severity
    if event.idempotency_key is not None:
        data["idempotencyKey"] = event.idempotency_key
    return data


def _create(tx: Tx, event: IngressEvent) -> IngressResult:
    assert event.title is not None and event.target is not None
    cursor = tx.run(
        """INSERT INTO tasks (source, type, severity, dedupe_key, title, body, target, channel,
               status, occurrence_count, first_seen_at, last_seen_at, created_at, updated_at,
               meta, callbacks)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, ?, ?)""",
        (
            event.source,
            event.type,
            event.severity,
            event.dedupe_key,
            event.title,
            event.body,
            event.target,
            event.channel,
            tx.now,
            tx.now,
            tx.now,
            tx.now,
            dumps(event.meta),
            int(event.callbacks),
        ),
    )
    task_id = int(cursor.lastrowid or 0)
    sent = sql_messages.send(tx, _message_draft(event, task_id), task_id=task_id)
    task = require(tx, task_id)
    task.message_id = sent.message.id
    _save(tx, task)
    _record(
        tx, task, event="created", actor=event.source, data=_event_data(event),
        callback=rules.CB_CREATED, sse="task.created",
    )
    return IngressResult(task, "created")


def _message_draft(event: IngressEvent, task_id: int) -> MessageDraft:
    assert event.title is not None and event.target is not None
    meta = {
        **event.meta,
        "taskId": task_id,
        "source": event.source,
        "type": event.type,
        "severity": event.severity,
        "dedupeKey": event.dedupe_key,
    }
    return MessageDraft(
        sender=event.source,
        to=event.target,
        body=event.body or event.title,
        subject=event.title,
        channel=event.channel,
        claimable=True,
        meta=meta,
        sent_by=event.sent_by,
    )


def _occurrence(tx: Tx, task: Task, event: IngressEvent) -> IngressResult:
    task.occurrence_count += 1
    task.last_seen_at = tx.now
    _save(tx, task)
    data = _event_data(event, occurrenceCount=task.occurrence_count)
    _record(tx, task, event="occurrence", actor=event.source, data=data,
            callback=rules.CB_OCCURRENCE)
    return IngressResult(task, "occurrence")


def _resolve(tx: Tx, event: IngressEvent) -> IngressResult:
    task = _active_by_dedupe(tx, event.source, event.dedupe_key)
    if task is None:
        raise not_found(
            f"no active task from '{event.source}' with dedupeKey '{event.dedupe_key}'"
        )
    previous = task.status
    task.status = "done"
    task.last_seen_at = tx.now
    _save(tx, task)
    data = _event_data(event, **{"from": previous, "to": "done"})
    _record(tx, task, event="resolved", actor=event.source, data=data,
            callback=rules.CB_RESOLVED)
    return IngressResult(task, "resolved")


def _observe(tx: Tx, source: str, outcome: str) -> None:
    column = {"created": "tasks_created", "occurrence": "occurrences", "resolved": "resolved"}
    counter = column[outcome]
    tx.run(
        f"""INSERT INTO integrations_seen (name, first_event_at, last_event_at, events, {counter})
            VALUES (?, ?, ?, 1, 1)
            ON CONFLICT(name) DO UPDATE SET last_event_at = excluded.last_event_at,
                events = integrations_seen.events + 1,
                {counter} = integrations_seen.{counter} + 1""",
        (source, tx.now, tx.now),
    )


# ------------------------------------------------------------------------------ reads


def list_tasks(tx: Tx, query: TaskQuery) -> list[Task]:
    clauses, params = [], []
    for column, value in (
        ("status", query.status),
        ("source", query.source),
        ("target", query.target),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = tx.all(f"SELECT * FROM tasks {where} ORDER BY id DESC LIMIT ?", [*params, query.limit])
    return [row_to_task(r) for r in rows]


def events(tx: Tx, task_id: int) -> list[TaskEvent] | None:
    if get(tx, task_id) is None:
        return None
    rows = tx.all("SELECT * FROM task_events WHERE task_id = ? ORDER BY id", (task_id,))
    return [
        TaskEvent(r["id"], r["task_id"], r["type"], r["actor"], loads(r["data"], {}),
                  r["created_at"])
        for r in rows
    ]


def stats(tx: Tx) -> dict[str, Any]:
    counts = {status: 0 for status in rules.STATUSES}
    for status, count in tx.all("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
        counts[status] = count
    return {"tasks": {**counts, "total": sum(counts.values())}}


# ------------------------------------------------------------------------------ claims


def claimable(tx: Tx, task_id: int, agent_id: str) -> Task:
    """The task `agent_id` asks to claim, refused when another holds it or it is finished
    (storage/cross_table.py claims it, with its message)."""
    task = require(tx, task_id)
    if task.claimed_by is not None and task.claimed_by != agent_id:
        raise conflict(
            "already_claimed",
            f"task {task_id} is already claimed by '{task.claimed_by}'",
            claimedBy=task.claimed_by,
        )
    if task.finished and task.claimed_by is None:
        raise conflict("invalid_state", f"task {task_id} is {task.status}")
    return task


def claim_alone(tx: Tx, task: Task, agent_id: str) -> None:
    """Claim a task whose message is gone: it goes to agents its target matches."""
    _require_eligible(tx, task, agent_id)
    _take(tx, task, agent_id)


def _require_eligible(tx: Tx, task: Task, agent_id: str) -> None:
    """Without its message (deleted), a task goes to agents its target matches."""
    agent = sql_agents.require(tx, agent_id)
    if not parse_target(task.target).matches(agent):
        raise forbidden(f"agent '{agent_id}' does not match the target of task {task.id}")


def after_message_claim(tx: Tx, task_id: int, agent_id: str) -> None:
    """The claimable message of a task was just claimed: the task goes with it."""
    task = get(tx, task_id)
    if task is None:
        return
    if task.finished:
        raise conflict("invalid_state", f"task {task_id} is {task.status}")
    if task.claimed_by is None:
        _take(tx, task, agent_id)


def _take(tx: Tx, task: Task, agent_id: str) -> None:
    task.status = "claimed"
    task.claimed_by = agent_id
    task.claimed_at = task.lease_renewed_at = tx.now
    _save(tx, task)
    _record(tx, task, event="claimed", actor=agent_id, callback=rules.CB_CLAIMED)


# ------------------------------------------------------------------------------ status


def change_status(tx: Tx, task_id: int, change: StatusChange) -> Task:
    task = require(tx, task_id)
    if task.claimed_by is not None and task.claimed_by != change.agent and not task.finished:
        raise forbidden(f"task {task_id} is claimed by '{task.claimed_by}'; only it may move it")
    reason = rules.transition_error(task.status, change.status)
    if reason is not None:
        raise conflict("invalid_state", f"task {task_id}: {reason}", status=task.status)
    previous = task.status
    if change.has_progress:
        task.progress = change.progress
    if change.has_result:
        task.result = change.result
    if change.status == "open" and previous != "open":
        _release(tx, task, actor=change.agent, reason="released", callback=rules.CB_RELEASED)
        return task
    task.status = change.status
    if task.claimed_by is not None:
        task.lease_renewed_at = tx.now
    _save(tx, task)
    data: dict[str, Any] = {"from": previous, "to": change.status}
    if change.has_progress:
        data["progress"] = change.progress
    if change.has_result:
        data["result"] = change.result
    moved = previous != change.status
    _record(
        tx, task, event="status" if moved else "progress", actor=change.agent, data=data,
        callback=rules.CB_STATUS if moved else None,
    )
    return task


def _release(
    tx: Tx, task: Task, *, actor: str | None, reason: str, callback: str, why: str | None = None
) -> None:
    """Back to open: the holder's claim on the task and on its message is cleared."""
    holder, previous = task.claimed_by, task.status
    task.status = "open"
    task.claimed_by = task.claimed_at = task.lease_renewed_at = None
    _save(tx, task)
    if task.message_id is not None:
        tx.run(
            "UPDATE messages SET claimed_by = NULL, claimed_at = NULL WHERE id = ?",
            (task.message_id,),
        )
    data = {"from": previous, "previousClaimer": holder, "reason": why or reason}
    _record(tx, task, event=reason, actor=actor, data=data, callback=callback)


def expire_leases(tx: Tx, silent_before_ms: int) -> list[Task]:
    """Held tasks whose holder is offline/gone, or silent since before the cutoff, reopen."""
    rows = tx.all(
        f"""SELECT t.*, a.status AS holder_status FROM tasks t
            LEFT JOIN agents a ON a.id = t.claimed_by
            WHERE t.status IN {sql_list(rules.LEASED_BY_OFFLINE)}"""
    )
    expired = []
    for row in rows:
        task = row_to_task(row)
        reason = _lease_reason(task, row["holder_status"], silent_before_ms)
        if reason is not None:
            _release(
                tx, task, actor=None, reason="lease_expired", callback=rules.CB_LEASE_EXPIRED,
                why=reason,
            )
            expired.append(task)
    return expired


def _lease_reason(task: Task, holder_status: str | None, silent_before_ms: int) -> str | None:
    if holder_status is None:
        return "the claimer is no longer registered"
    if holder_status == "offline":
        return "the claimer went offline"
    renewed = task.lease_renewed_at or task.claimed_at or 0
    if task.status in rules.LEASED_BY_SILENCE and renewed < silent_before_ms:
        return "the claimer did not report within the lease"
    return None


# ------------------------------------------------------------------------------ retention


def prune_finished(tx: Tx, updated_before_ms: int) -> int:
    """Retention: finished tasks untouched since the cutoff, with their events and callbacks.

    A task with a pending callback waits until it is delivered or dead, so no delivery is lost.
    """
    doomed = [
        r[0]
        for r in tx.all(
            f"""SELECT id FROM tasks WHERE status IN {FINISHED_SQL} AND updated_at < ?
                AND NOT EXISTS (SELECT 1 FROM callback_outbox c
                                WHERE c.task_id = tasks.id AND c.status = 'pending')""",
            (updated_before_ms,),
        )
    ]
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        marks = placeholders(len(chunk))
        tx.run(f"DELETE FROM task_events WHERE task_id IN ({marks})", chunk)
        tx.run(f"DELETE FROM callback_outbox WHERE task_id IN ({marks})", chunk)
        tx.run(f"DELETE FROM tasks WHERE id IN ({marks})", chunk)
    return len(doomed)


# ------------------------------------------------------------------------------ integrations


def integrations_seen(tx: Tx) -> dict[str, dict[str, Any]]:
    return {row["name"]: dict(row) for row in tx.all("SELECT * FROM integrations_seen")}


def channel_usage(tx: Tx) -> list[dict[str, Any]]:
    """Message channels in use: by messages, and by agents that subscribe to them."""
    used: dict[str, dict[str, Any]] = {}
    for name, count, last in tx.all(
        "SELECT channel, COUNT(*), MAX(created_at) FROM messages WHERE channel IS NOT NULL"
        " GROUP BY channel"
    ):
        used[name] = {"name": name, "messages": count, "lastMessageAt": last, "subscribers": 0}
    for (channels,) in tx.all("SELECT channels FROM agents"):
        for name in loads(channels, []):
            if name != "*":
                entry = used.setdefault(
                    name, {"name": name, "messages": 0, "lastMessageAt": None, "subscribers": 0}
                )
                entry["subscribers"] += 1
    return [used[name] for name in sorted(used)]

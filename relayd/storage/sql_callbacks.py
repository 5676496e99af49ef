"""The callback outbox (run on the SQLite writer or reader thread).

A row is written in the same transaction as the task change it reports. The delivery worker
(relayd.daemon.callbacks) reads the head of each task's pending queue, so a task's callbacks go
out in order: row N+1 is not offered before row N is delivered or dead.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from relayd.domain.models import iso
from relayd.domain.tasks import Delivery, Task
from relayd.storage.sqlite_tx import Tx, dumps

DEAD_LISTED = 20  # dead deliveries listed per integration in GET /integrations


def enqueue(tx: Tx, task: Task, event: str) -> str:
    delivery_id = str(uuid.uuid4())
    body = dumps({"event": event, "task": task.to_json(), "at": iso(tx.now)})
    tx.run(
        """INSERT INTO callback_outbox (delivery_id, integration, task_id, event, body,
               next_attempt_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (delivery_id, task.source, task.id, event, body, tx.now, tx.now),
    )
    return delivery_id


def row_to_delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        delivery_id=row["delivery_id"],
        integration=row["integration"],
        task_id=row["task_id"],
        event=row["event"],
        body=row["body"],
        attempts=row["attempts"],
        status=row["status"],
    )


_HEADS = """SELECT o.* FROM callback_outbox o JOIN
    (SELECT task_id, MIN(id) AS head FROM callback_outbox WHERE status = 'pending'
     GROUP BY task_id) h ON o.id = h.head"""


def due(tx: Tx, now: int, limit: int) -> list[Delivery]:
    """The oldest pending delivery of each task, if its attempt is due."""
    rows = tx.all(
        f"{_HEADS} WHERE o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (now, limit),
    )
    return [row_to_delivery(r) for r in rows]


def next_due_at(tx: Tx, after: int) -> int | None:
    """When the next head becomes due, after `after` (due heads are in flight or queued)."""
    value = tx.scalar(f"{_HEADS.replace('o.*', 'MIN(o.next_attempt_at)', 1)}"
                      " WHERE o.next_attempt_at > ?", (after,))
    return None if value is None else int(value)


def resume(tx: Tx) -> int:
    """At start: pending deliveries are attempted now, whatever backoff they had."""
    return tx.run(
        "UPDATE callback_outbox SET next_attempt_at = ? WHERE status = 'pending'"
        " AND next_attempt_at > ?",
        (tx.now, tx.now),
    ).rowcount


def delivered(tx: Tx, row_id: int, http_status: int) -> None:
    integration = _finish(tx, row_id, "delivered", http_status, None)
    if integration is not None:
        _note(tx, integration, "delivered", None, "callbacks_delivered")


# A dead delivery's task and what its callback_dead task event says.
DeadLetter = tuple[int, dict[str, Any]]


def failed(
    tx: Tx, row_id: int, error: str, http_status: int | None, max_attempts: int, retry_at: int
) -> tuple[str, DeadLetter | None]:
    """Record a failed attempt: 'retrying' (scheduled for retry_at) or 'dead', then also
    what the task's history must record (storage/cross_table.py records it)."""
    row = tx.one("SELECT * FROM callback_outbox WHERE id = ? AND status = 'pending'", (row_id,))
    if row is None:
        return "gone", None
    attempts = row["attempts"] + 1
    if attempts >= max_attempts:
        _finish(tx, row_id, "dead", http_status, error)
        _note(tx, row["integration"], "dead", error, "callbacks_dead")
        return "dead", (row["task_id"], {"event": row["event"], "deliveryId": row["delivery_id"],
                                         "attempts": attempts, "lastError": error})
    tx.run(
        "UPDATE callback_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,"
        " last_status = ? WHERE id = ?",
        (attempts, retry_at, error, http_status, row_id),
    )
    _note(tx, row["integration"], "retrying", error, "callbacks_failed")
    return "retrying", None


def _finish(
    tx: Tx, row_id: int, status: str, http_status: int | None, error: str | None
) -> str | None:
    row = tx.one("SELECT integration FROM callback_outbox WHERE id = ?", (row_id,))
    tx.run(
        "UPDATE callback_outbox SET status = ?, attempts = attempts + 1, last_status = ?,"
        " last_error = COALESCE(?, last_error), finished_at = ?"
        " WHERE id = ? AND status = 'pending'",
        (status, http_status, error, tx.now, row_id),
    )
    return None if row is None else str(row[0])


def _note(tx: Tx, integration: str, status: str, error: str | None, counter: str) -> None:
    tx.run(
        f"""INSERT INTO integrations_seen (name, first_event_at, last_event_at, {counter},
                last_callback_status, last_callback_at, last_callback_error)
            VALUES (?, ?, ?, 1, ?, ?, ?)
            ON CONFLICT(name) DO UPDATE SET {counter} = integrations_seen.{counter} + 1,
                last_callback_status = excluded.last_callback_status,
                last_callback_at = excluded.last_callback_at,
                last_callback_error = COALESCE(excluded.last_callback_error,
                                               integrations_seen.last_callback_error)""",
        (integration, tx.now, tx.now, status, tx.now, error),
    )


def summary(tx: Tx) -> dict[str, dict[str, Any]]:
    """Per integration: deliveries by state, and the most recent dead ones."""
    result: dict[str, dict[str, Any]] = {}
    for name, status, count in tx.all(
        "SELECT integration, status, COUNT(*) FROM callback_outbox GROUP BY integration, status"
    ):
        entry = result.setdefault(name, _empty_summary())
        entry[status] = count
    for name, entry in result.items():
        if entry["dead"]:
            rows = tx.all(
                "SELECT * FROM callback_outbox WHERE integration = ? AND status = 'dead'"
                " ORDER BY id DESC LIMIT ?",
                (name, DEAD_LISTED),
            )
            entry["deadDeliveries"] = [_dead_json(r) for r in rows]
    return result


def _empty_summary() -> dict[str, Any]:
    return {"pending": 0, "delivered": 0, "dead": 0, "deadDeliveries": []}


def _dead_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "deliveryId": row["delivery_id"],
        "taskId": row["task_id"],
        "event": row["event"],
        "attempts": row["attempts"],
        "lastError": row["last_error"],
        "lastStatus": row["last_status"],
        "createdAt": iso(row["created_at"]),
        "diedAt": iso(row["finished_at"]),
    }


def prune_delivered(tx: Tx, before_ms: int) -> int:
    """Retention: delivered callbacks older than the cutoff, whatever their task's state."""
    return tx.run(
        "DELETE FROM callback_outbox WHERE status = 'delivered' AND finished_at < ?",
        (before_ms,),
    ).rowcount


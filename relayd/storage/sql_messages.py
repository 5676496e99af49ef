"""Message operations (run on the SQLite writer or reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

from relayd.domain.models import Agent, Message
from relayd.domain.targets import parse_target, recipients
from relayd.domain.tasks import FINISHED
from relayd.errors import ApiError, conflict, forbidden, invalid, not_found
from relayd.storage import sql_agents, sql_idempotency
from relayd.storage.base import MessageDraft, MessageQuery, SendResult
from relayd.storage.sqlite_tx import Tx, dumps, loads, placeholders, sql_list


def row_to_message(row: sqlite3.Row, reader: str | None = None) -> Message:
    keys = row.keys()
    return Message(
        id=row["id"],
        sender=row["sender"],
        to=row["target"],
        body=row["body"],
        subject=row["subject"],
        channel=row["channel"],
        reply_to=row["reply_to"],
        thread_id=row["thread_id"] or row["id"],
        claimable=bool(row["claimable"]),
        claimed_by=row["claimed_by"],
        claimed_at=row["claimed_at"],
        created_at=row["created_at"],
        meta=loads(row["meta"], {}),
        task_id=row["task_id"],
        sent_by=row["sent_by"],
        read_at=row["read_at"] if "read_at" in keys else None,
        delivered_at=row["delivered_at"] if "delivered_at" in keys else None,
        reader=reader,
    )


def get(tx: Tx, message_id: int) -> Message | None:
    row = tx.one("SELECT * FROM messages WHERE id = ?", (message_id,))
    return None if row is None else row_to_message(row)


def require(tx: Tx, message_id: int) -> Message:
    message = get(tx, message_id)
    if message is None:
        raise not_found(f"message {message_id} does not exist")
    return message


def recipients_of(tx: Tx, message_id: int) -> list[str]:
    rows = tx.all(
        "SELECT agent_id FROM deliveries WHERE message_id = ? ORDER BY agent_id", (message_id,)
    )
    return [r[0] for r in rows]


def send(tx: Tx, draft: MessageDraft, task_id: int | None = None) -> SendResult:
    print_ = None
    if draft.idempotency_key is not None:
        print_ = sql_idempotency.fingerprint(*draft.fingerprint_parts())
        replay = _replay(tx, draft.sender, draft.idempotency_key, print_)
        if replay is not None:
            return SendResult(replay, recipients_of(tx, replay.id), created=False)
    target = parse_target(draft.to)
    thread_id = _thread_of_parent(tx, draft.reply_to)
    if target.is_direct:
        delivered = [a for a in _direct_recipient(tx, target.value) if a != draft.sender]
    else:
        delivered = recipients(target, sql_agents.all_agents(tx), draft.sender, draft.channel)
    message = _insert(tx, draft, thread_id, task_id)
    message_id = message.id
    tx.run_many(
        "INSERT INTO deliveries (agent_id, message_id) VALUES (?, ?)",
        [(agent_id, message_id) for agent_id in delivered],
    )
    if draft.idempotency_key is not None:
        sql_idempotency.remember(
            tx, "message", draft.sender, draft.idempotency_key, message_id, print_
        )
    event = tx.emit("message.new", {**message.to_json(), "recipients": delivered}, delivered)
    return SendResult(message, delivered, created=True, payload_json=event.data_json)


def send_many(tx: Tx, drafts: list[MessageDraft]) -> list[SendResult | Exception]:
    """Plain sends (no Idempotency-Key) of one group commit, set-based: a few statements for
    the whole group instead of several per message, since per-statement GIL hand-offs between
    the DB thread and the event loop were what capped throughput."""
    outcomes: list[SendResult | Exception | None] = []
    planned: list[tuple[int, MessageDraft, int | None, list[str]]] = []
    targets = [parse_target(draft.to) for draft in drafts]  # the handler validated them
    known = _registered(tx, [t.value for t in targets if t.is_direct])
    everyone: list[Agent] | None = None
    for index, (draft, target) in enumerate(zip(drafts, targets, strict=True)):
        try:
            thread_id = _thread_of_parent(tx, draft.reply_to)
            if target.is_direct and target.value not in known:
                raise not_found(f"agent '{target.value}' is not registered")
            if target.is_direct:
                delivered = [target.value] if target.value != draft.sender else []
            else:
                everyone = sql_agents.all_agents(tx) if everyone is None else everyone
                delivered = recipients(target, everyone, draft.sender, draft.channel)
        except ApiError as exc:
            outcomes.append(exc)
            continue
        outcomes.append(None)  # filled in below, once the group is written
        planned.append((index, draft, thread_id, delivered))
    first_id = latest_id(tx) + 1
    messages = [
        _record(tx, first_id + n, draft, thread_id, None)
        for n, (_, draft, thread_id, _) in enumerate(planned)
    ]
    tx.insert_rows(MESSAGE_COLUMNS, [
        _row(tx, m.id, draft, thread_id, None)
        for m, (_, draft, thread_id, _) in zip(messages, planned, strict=True)
    ])
    tx.insert_rows("INSERT INTO deliveries (agent_id, message_id)", [
        (agent_id, m.id)
        for m, (_, _, _, delivered) in zip(messages, planned, strict=True)
        for agent_id in delivered
    ])
    events = tx.emit_many("message.new", [
        ({**m.to_json(), "recipients": delivered}, delivered)
        for m, (_, _, _, delivered) in zip(messages, planned, strict=True)
    ])
    for m, event, (index, _, _, delivered) in zip(messages, events, planned, strict=True):
        outcomes[index] = SendResult(m, delivered, created=True, payload_json=event.data_json)
    return [outcome for outcome in outcomes if outcome is not None]


def _registered(tx: Tx, agent_ids: list[str]) -> set[str]:
    wanted = sorted(set(agent_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = tx.all(f"SELECT id FROM agents WHERE id IN ({placeholders(len(chunk))})", chunk)
        found.update(r[0] for r in rows)
    return found


def _direct_recipient(tx: Tx, agent_id: str) -> list[str]:
    if tx.scalar("SELECT 1 FROM agents WHERE id = ?", (agent_id,)) is None:
        raise not_found(f"agent '{agent_id}' is not registered")
    return [agent_id]


def _replay(tx: Tx, sender: str, key: str, print_: str) -> Message | None:
    ref = sql_idempotency.find(tx, "message", sender, key, print_)
    return None if ref is None else get(tx, ref)


def _thread_of_parent(tx: Tx, reply_to: int | None) -> int | None:
    if reply_to is None:
        return None
    row = tx.one("SELECT id, thread_id FROM messages WHERE id = ?", (reply_to,))
    if row is None:
        raise invalid(f"replyTo: message {reply_to} does not exist")
    return int(row["thread_id"] or row["id"])


MESSAGE_COLUMNS = """INSERT INTO messages (id, sender, target, subject, body, channel, reply_to,
    thread_id, claimable, created_at, meta, task_id, sent_by)"""
INSERT_MESSAGE = f"{MESSAGE_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _row(
    tx: Tx, message_id: int | None, draft: MessageDraft, thread_id: int | None,
    task_id: int | None,
) -> tuple[Any, ...]:
    return (
        message_id, draft.sender, draft.to, draft.subject, draft.body, draft.channel,
        draft.reply_to, thread_id, int(draft.claimable), tx.now, dumps(draft.meta), task_id,
        draft.sent_by,
    )


def _insert(
    tx: Tx, draft: MessageDraft, thread_id: int | None, task_id: int | None
) -> Message:
    """Store a message; a thread root keeps thread_id NULL and reads back as its own id."""
    cursor = tx.run(INSERT_MESSAGE, _row(tx, None, draft, thread_id, task_id))
    return _record(tx, int(cursor.lastrowid or 0), draft, thread_id, task_id)


def _record(
    tx: Tx, message_id: int, draft: MessageDraft, thread_id: int | None, task_id: int | None
) -> Message:
    return Message(
        id=message_id,
        sender=draft.sender,
        to=draft.to,
        body=draft.body,
        subject=draft.subject,
        channel=draft.channel,
        reply_to=draft.reply_to,
        thread_id=thread_id or message_id,
        claimable=draft.claimable,
        created_at=tx.now,
        meta=draft.meta,
        task_id=task_id,
        sent_by=draft.sent_by,
    )


def list_messages(tx: Tx, query: MessageQuery) -> list[Message]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.reader is not None:
        source = "messages m JOIN deliveries d ON d.message_id = m.id AND d.agent_id = ?"
        columns = "m.*, d.read_at AS read_at, d.delivered_at AS delivered_at"
        params.append(query.reader)
        if query.unread:
            clauses.append("d.read_at IS NULL")
        if query.undelivered:
            clauses.append("d.delivered_at IS NULL")
    else:
        source, columns = "messages m", "m.*"
    for column, value in (
        ("m.id >", query.since),
        ("m.channel =", query.channel),
        ("m.sender =", query.sender),
    ):
        if value is not None:
            clauses.append(f"{column} ?")
            params.append(value)
    if query.thread is not None:
        clauses.append("(m.thread_id = ? OR m.id = ?)")
        params.extend((query.thread, query.thread))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if query.descending else "ASC"
    sql = f"SELECT {columns} FROM {source} {where} ORDER BY m.id {order} LIMIT ?"
    rows = tx.all(sql, [*params, query.limit])
    return [row_to_message(r, query.reader) for r in rows]


def latest_id(tx: Tx) -> int:
    return tx.last_id("messages")


def thread(tx: Tx, message_id: int) -> list[Message] | None:
    message = get(tx, message_id)
    if message is None:
        return None
    root = message.thread_id or message.id
    rows = tx.all(
        "SELECT * FROM messages WHERE thread_id = ? OR id = ? ORDER BY id", (root, root)
    )
    return [row_to_message(r) for r in rows]


def claim(tx: Tx, message_id: int, agent_id: str) -> Message:
    """Exactly one agent ever wins; the single writer makes the check-and-set atomic."""
    message = require(tx, message_id)
    if not message.claimable:
        raise conflict("invalid_state", f"message {message_id} is not claimable")
    if message.claimed_by is not None and message.claimed_by == agent_id:
        return message
    audience = recipients_of(tx, message_id)
    if agent_id not in audience:
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    if message.claimed_by is not None:
        raise conflict(
            "already_claimed",
            f"message {message_id} is already claimed by '{message.claimed_by}'",
            claimedBy=message.claimed_by,
        )
    tx.run(
        "UPDATE messages SET claimed_by = ?, claimed_at = ? WHERE id = ? AND claimed_by IS NULL",
        (agent_id, tx.now, message_id),
    )
    message.claimed_by, message.claimed_at = agent_id, tx.now
    if message.task_id is not None:  # the task's claim is this claim (one winner for both)
        from relayd.storage import sql_tasks  # late import: sql_tasks sends through us

        sql_tasks.after_message_claim(tx, message.task_id, agent_id)
    tx.emit("message.claimed", {"id": message_id, "claimedBy": agent_id}, audience)
    return message


def set_read(tx: Tx, message_id: int, agent_id: str, read: bool) -> Message:
    require(tx, message_id)
    cursor = tx.run(
        "UPDATE deliveries SET read_at = ? WHERE message_id = ? AND agent_id = ?",
        (tx.now if read else None, message_id, agent_id),
    )
    if cursor.rowcount == 0:
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    return _for_reader(tx, message_id, agent_id)


def set_delivered(tx: Tx, message_id: int, agent_id: str, delivered: bool) -> Message:
    """Record (or clear) that agent_id's provider delivered the message into its session;
    the first delivery time is kept."""
    require(tx, message_id)
    cursor = tx.run(
        "UPDATE deliveries SET delivered_at = CASE WHEN ? THEN COALESCE(delivered_at, ?)"
        " ELSE NULL END WHERE message_id = ? AND agent_id = ?",
        (1 if delivered else 0, tx.now, message_id, agent_id),
    )
    if cursor.rowcount == 0:
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    return _for_reader(tx, message_id, agent_id)


def _for_reader(tx: Tx, message_id: int, agent_id: str) -> Message:
    row = tx.one(
        "SELECT m.*, d.read_at AS read_at, d.delivered_at AS delivered_at FROM messages m"
        " JOIN deliveries d ON d.message_id = m.id AND d.agent_id = ? WHERE m.id = ?",
        (agent_id, message_id),
    )
    assert row is not None
    return row_to_message(row, agent_id)


def delete(tx: Tx, message_id: int) -> bool:
    audience = recipients_of(tx, message_id)
    if tx.run("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount == 0:
        return False
    tx.run("DELETE FROM deliveries WHERE message_id = ?", (message_id,))
    tx.emit("message.deleted", {"id": message_id}, audience)
    return True


def prune(tx: Tx, created_before_ms: int) -> int:
    """Retention: old messages and their read state, except those of unfinished tasks."""
    doomed = [
        r[0]
        for r in tx.all(
            f"SELECT id FROM messages WHERE created_at < ? AND {prunable_sql()}",
            (created_before_ms,),
        )
    ]
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        marks = placeholders(len(chunk))
        tx.run(f"DELETE FROM deliveries WHERE message_id IN ({marks})", chunk)
        tx.run(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
    return len(doomed)


def prunable_sql() -> str:
    """SQL condition true for messages retention may delete: those of no task or of a
    finished one (a task still in play keeps its message, whatever its age)."""
    return (
        "(task_id IS NULL OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = messages.task_id"
        f" AND t.status NOT IN {sql_list(FINISHED)}))"
    )

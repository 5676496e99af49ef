"""Message operations (run on the SQLite writer or reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

from relayd.domain.models import Message, Recipients
from relayd.domain.targets import Target, parse_target
from relayd.domain.tasks import FINISHED
from relayd.errors import ApiError, conflict, forbidden, invalid, not_found
from relayd.storage import sql_fanout, sql_idempotency
from relayd.storage.base import InboxPage, MessageDraft, MessageQuery, SendResult
from relayd.storage.sqlite_tx import EventSpec, Tx, dumps, loads, placeholders, sql_list


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
    """Every current recipient of a message, sorted."""
    return sql_fanout.recipients_now(tx, message_id)


class _Plan:
    """Who one send reaches: direct recipients (rows) or a shared audience."""

    __slots__ = ("audience", "direct", "thread_id")

    def __init__(
        self, thread_id: int | None, direct: list[str], audience: sql_fanout.Audience | None
    ) -> None:
        self.thread_id = thread_id
        self.direct = direct
        self.audience = audience

    def recipients(self, sender: str) -> list[str]:
        return self.direct if self.audience is None else self.audience.recipients_of(sender)

    def recipients_json(self, sender: str) -> str:
        if self.audience is None:
            return dumps(self.direct)
        return self.audience.recipients_json(sender)

    def live(self, sender: str) -> frozenset[str] | Recipients:
        if self.audience is None:
            return frozenset(self.direct)
        return Recipients(self.audience.lookup, sender)


def _plan(tx: Tx, draft: MessageDraft, target: Target, direct_known: bool) -> _Plan:
    thread_id = _thread_of_parent(tx, draft.reply_to)
    if target.is_direct:
        if not direct_known:
            raise not_found(f"agent '{target.value}' is not registered")
        return _Plan(thread_id, [target.value] if target.value != draft.sender else [], None)
    return _Plan(thread_id, [], sql_fanout.cache(tx).resolve(tx, target, draft.channel))


def _announce(
    tx: Tx, messages: list[Message], plans: list[_Plan]
) -> list[SendResult]:
    """Deliveries rows for direct recipients, the message.new events (the message; readers
    learn from the reference whether it is theirs) and the results, with the JSON already
    encoded for the event, so the HTTP answer need not encode the message again."""
    tx.insert_rows("INSERT INTO deliveries (agent_id, message_id)", [
        (agent_id, m.id)
        for m, plan in zip(messages, plans, strict=True)
        for agent_id in plan.direct
    ])
    specs: list[EventSpec] = []
    for m, plan in zip(messages, plans, strict=True):
        if plan.audience is None:
            specs.append((m.to_json(), plan.direct, None, None))
        else:
            specs.append((m.to_json(), None, m.id, plan.live(m.sender)))
    events = tx.emit_many("message.new", specs)
    return [
        SendResult(
            m,
            plan.recipients(m.sender),
            created=True,
            message_json=event.data_json,
            recipients_json=plan.recipients_json(m.sender),
        )
        for m, plan, event in zip(messages, plans, events, strict=True)
    ]


def send(tx: Tx, draft: MessageDraft, task_id: int | None = None) -> SendResult:
    print_ = None
    if draft.idempotency_key is not None:
        print_ = sql_idempotency.fingerprint(*draft.fingerprint_parts())
        replay = _replay(tx, draft.sender, draft.idempotency_key, print_)
        if replay is not None:
            return SendResult(replay, recipients_of(tx, replay.id), created=False)
    target = draft.target or parse_target(draft.to)
    if not target.is_direct:
        sql_fanout.cache(tx).sync(tx)
    known = target.is_direct and _registered(tx, [target.value]) != set()
    plan = _plan(tx, draft, target, known)
    message = _insert(tx, draft, plan, task_id)
    if draft.idempotency_key is not None:
        sql_idempotency.remember(
            tx, "message", draft.sender, draft.idempotency_key, message.id, print_
        )
    return _announce(tx, [message], [plan])[0]


def send_many(tx: Tx, drafts: list[MessageDraft]) -> list[SendResult | Exception]:
    """Plain sends (no Idempotency-Key) of one group commit, set-based: a few statements for
    the whole group instead of several per message, since per-statement GIL hand-offs between
    the DB thread and the event loop were what capped throughput."""
    outcomes: list[SendResult | Exception | None] = []
    planned: list[tuple[int, MessageDraft, _Plan]] = []
    targets = [draft.target or parse_target(draft.to) for draft in drafts]
    known = _registered(tx, [t.value for t in targets if t.is_direct])
    if not all(t.is_direct for t in targets):
        sql_fanout.cache(tx).sync(tx)
    for index, (draft, target) in enumerate(zip(drafts, targets, strict=True)):
        try:
            plan = _plan(tx, draft, target, target.value in known)
        except ApiError as exc:
            outcomes.append(exc)
            continue
        outcomes.append(None)  # filled in below, once the group is written
        planned.append((index, draft, plan))
    first_id = tx.reserve_ids("messages", len(planned))
    messages = [
        _record(tx, first_id + n, draft, plan.thread_id, None)
        for n, (_, draft, plan) in enumerate(planned)
    ]
    tx.insert_rows(MESSAGE_COLUMNS, [
        _row(tx, m.id, draft, plan, None)
        for m, (_, draft, plan) in zip(messages, planned, strict=True)
    ])
    results = _announce(tx, messages, [plan for _, _, plan in planned])
    for result, (index, _, _) in zip(results, planned, strict=True):
        outcomes[index] = result
    return [outcome for outcome in outcomes if outcome is not None]


def _registered(tx: Tx, agent_ids: list[str]) -> set[str]:
    wanted = sorted(set(agent_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = tx.all(f"SELECT id FROM agents WHERE id IN ({placeholders(len(chunk))})", chunk)
        found.update(r[0] for r in rows)
    return found


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
    thread_id, claimable, created_at, meta, task_id, sent_by, audience_id, audience_size)"""
# A single insert lets the database choose the id (PostgreSQL refuses an explicit NULL).
INSERT_MESSAGE = """INSERT INTO messages (sender, target, subject, body, channel, reply_to,
    thread_id, claimable, created_at, meta, task_id, sent_by, audience_id, audience_size)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _row(
    tx: Tx, message_id: int | None, draft: MessageDraft, plan: _Plan, task_id: int | None,
) -> tuple[Any, ...]:
    audience = plan.audience
    return (
        message_id, draft.sender, draft.to, draft.subject, draft.body, draft.channel,
        draft.reply_to, plan.thread_id, int(draft.claimable), tx.now, dumps(draft.meta), task_id,
        draft.sent_by,
        None if audience is None else audience.id,
        0 if audience is None else len(audience.members) - (draft.sender in audience.lookup),
    )


def _insert(tx: Tx, draft: MessageDraft, plan: _Plan, task_id: int | None) -> Message:
    """Store a message; a thread root keeps thread_id NULL and reads back as its own id."""
    cursor = tx.run(INSERT_MESSAGE, _row(tx, None, draft, plan, task_id)[1:])
    return _record(tx, int(cursor.lastrowid or 0), draft, plan.thread_id, task_id)


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
    params: dict[str, Any] = {"limit": query.limit}
    for column, name, value in (
        ("m.id >", "since", query.since),
        ("m.channel =", "channel", query.channel),
        ("m.sender =", "sender", query.sender),
    ):
        if value is not None:
            clauses.append(f"{column} :{name}")
            params[name] = value
    if query.thread is not None:
        clauses.append("(m.thread_id = :thread OR m.id = :thread)")
        params["thread"] = query.thread
    order = "DESC" if query.descending else "ASC"
    if query.reader is None:
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT m.* FROM messages m {where} ORDER BY m.id {order} LIMIT :limit"
        return [row_to_message(r) for r in tx.all(sql, params)]
    # An inbox: the reader's deliveries rows, then the messages of its audiences that it has
    # no row for (unread and undelivered by definition); both arms come out in id order and
    # SQLite merges them.
    params["agent"] = query.reader
    filters = "".join(f" AND {c}" for c in clauses)
    unread = " AND d.read_at IS NULL" if query.unread else ""
    if query.undelivered:
        unread += " AND d.delivered_at IS NULL"
    sql = (
        "SELECT d.message_id AS sort_id, m.*, d.read_at AS read_at,"
        " d.delivered_at AS delivered_at FROM deliveries d"
        " JOIN messages m ON m.id = d.message_id"
        f" WHERE d.agent_id = :agent{unread}{filters}"
        " UNION ALL"
        " SELECT m.id AS sort_id, m.*, NULL AS read_at, NULL AS delivered_at"
        " FROM audience_members am"
        " JOIN messages m ON m.audience_id = am.audience_id"
        " WHERE am.agent_id = :agent AND m.sender != :agent"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.agent_id = :agent"
        f" AND d.message_id = m.id){filters}"
        f" ORDER BY sort_id {order} LIMIT :limit"
    )
    return [row_to_message(r, query.reader) for r in tx.all(sql, params)]


def inbox(tx: Tx, query: MessageQuery) -> InboxPage:
    if query.reader is not None and tx.scalar(
        "SELECT 1 FROM agents WHERE id = ?", (query.reader,)
    ) is None:
        return InboxPage(False, [], 0)
    messages = list_messages(tx, query)
    return InboxPage(True, messages, 0 if messages else latest_id(tx))


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


def take_claim(tx: Tx, message_id: int, agent_id: str) -> tuple[Message, bool]:
    """Exactly one agent ever wins; the single writer makes the check-and-set atomic. Answers
    the message and whether this call took it (False: `agent_id` held it already). The caller
    announces a new claim (announce_claim) once what goes with it is done
    (storage/cross_table.py: a task's claim)."""
    message = require(tx, message_id)
    if not message.claimable:
        raise conflict("invalid_state", f"message {message_id} is not claimable")
    if message.claimed_by is not None and message.claimed_by == agent_id:
        return message, False
    if not sql_fanout.is_recipient(tx, message_id, agent_id):
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    if message.claimed_by is not None:
        raise conflict(
            "already_claimed",
            f"message {message_id} is already claimed by '{message.claimed_by}'",
            claimedBy=message.claimed_by,
        )
    won = tx.one(  # one statement decides: the row changes only while nobody holds it
        "UPDATE messages SET claimed_by = ?, claimed_at = ? WHERE id = ? AND claimed_by IS NULL"
        " RETURNING claimed_by",
        (agent_id, tx.now, message_id),
    )
    if won is None:
        holder = tx.scalar("SELECT claimed_by FROM messages WHERE id = ?", (message_id,))
        raise conflict(
            "already_claimed",
            f"message {message_id} is already claimed by '{holder}'",
            claimedBy=holder,
        )
    message.claimed_by, message.claimed_at = agent_id, tx.now
    return message, True


def announce_claim(tx: Tx, message_id: int, agent_id: str) -> None:
    tx.emit(
        "message.claimed",
        {"id": message_id, "claimedBy": agent_id},
        of_message=message_id,
        live=sql_fanout.live_recipients(tx, message_id),
    )


def set_read(tx: Tx, message_id: int, agent_id: str, read: bool) -> Message:
    require(tx, message_id)
    if not sql_fanout.is_recipient(tx, message_id, agent_id):
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    # an audience member gets its row (its read state) the first time it marks the message
    tx.run(
        "INSERT INTO deliveries (agent_id, message_id, read_at) VALUES (?, ?, ?)"
        " ON CONFLICT (agent_id, message_id) DO UPDATE SET read_at = excluded.read_at",
        (agent_id, message_id, tx.now if read else None),
    )
    return _for_reader(tx, message_id, agent_id)


def set_delivered(tx: Tx, message_id: int, agent_id: str, delivered: bool) -> Message:
    """Record (or clear) that agent_id's provider delivered the message into its session;
    the first delivery time is kept."""
    require(tx, message_id)
    if not sql_fanout.is_recipient(tx, message_id, agent_id):
        raise forbidden(f"agent '{agent_id}' is not a recipient of message {message_id}")
    tx.run(
        "INSERT INTO deliveries (agent_id, message_id, delivered_at) VALUES (?, ?, ?)"
        " ON CONFLICT (agent_id, message_id) DO UPDATE SET delivered_at ="
        " CASE WHEN ? = 1 THEN COALESCE(deliveries.delivered_at, excluded.delivered_at)"
        " ELSE NULL END",
        (agent_id, message_id, tx.now if delivered else None, 1 if delivered else 0),
    )
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
    # events that pointed at its recipients now list them (the reference is gone)
    tx.run(
        "UPDATE events SET audience = ?, audience_message = NULL WHERE audience_message = ?",
        (dumps(audience), message_id),
    )
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
    if doomed:
        sql_fanout.prune_unused(tx)
    return len(doomed)


def prunable_sql() -> str:
    """SQL condition true for messages retention may delete: those of no task or of a
    finished one (a task still in play keeps its message, whatever its age)."""
    return (
        "(task_id IS NULL OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = messages.task_id"
        f" AND t.status NOT IN {sql_list(FINISHED)}))"
    )

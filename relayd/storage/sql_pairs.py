"""Pair session operations (run on the SQLite writer or reader thread).

Each state change records a `pair.updated` event for the two participants in the same
transaction; the single writer makes the busy check and the transition atomic.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from relayd.domain import pairs as rules
from relayd.domain.models import Pair
from relayd.errors import conflict, forbidden, invalid, not_found
from relayd.storage import sql_agents, sql_idempotency, sql_messages
from relayd.storage.base import MessageDraft, SendResult
from relayd.storage.sqlite_tx import Tx, placeholders

OPEN = rules.OPEN_STATUSES


def row_to_pair(row: sqlite3.Row) -> Pair:
    return Pair(
        id=row["id"],
        status=row["status"],
        initiator=row["initiator"],
        partner=row["partner"],
        objective=row["objective"],
        created_at=row["created_at"],
        accepted_at=row["accepted_at"],
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        reason=row["reason"],
        invite_message_id=row["invite_message_id"],
    )


def get(tx: Tx, pair_id: int) -> Pair | None:
    row = tx.one("SELECT * FROM pairs WHERE id = ?", (pair_id,))
    return None if row is None else row_to_pair(row)


def require(tx: Tx, pair_id: int) -> Pair:
    pair = get(tx, pair_id)
    if pair is None:
        raise not_found(f"pair {pair_id} does not exist")
    return pair


def list_pairs(tx: Tx, agent: str | None, statuses: Sequence[str] | None, limit: int) -> list[Pair]:
    clauses: list[str] = []
    params: list[Any] = []
    if agent is not None:
        clauses.append("(initiator = ? OR partner = ?)")
        params += [agent, agent]
    if statuses:
        clauses.append(f"status IN ({placeholders(len(statuses))})")
        params += list(statuses)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = tx.all(f"SELECT * FROM pairs {where} ORDER BY id LIMIT ?", [*params, limit])
    return [row_to_pair(r) for r in rows]


def counts(tx: Tx) -> dict[str, int]:
    found = {r[0]: r[1] for r in tx.all("SELECT status, COUNT(*) FROM pairs GROUP BY status")}
    by_status = {status: int(found.get(status, 0)) for status in rules.PAIR_STATUSES}
    return {"total": sum(by_status.values()), **by_status}


# --------------------------------------------------------------------------- create


def create(
    tx: Tx, initiator: str, to: str, objective: str | None, idempotency_key: str | None = None,
    sent_by: str | None = None,
) -> tuple[Pair, bool]:
    """The new pending pair and True; or, for a repeated Idempotency-Key, the original and False."""
    print_ = sql_idempotency.fingerprint(to, objective)
    if idempotency_key is not None:
        original = _replayed_pair(tx, initiator, idempotency_key, print_)
        if original is not None:
            return original, False
    sql_agents.require(tx, initiator)
    partner = _resolve_partner(tx, initiator, to)
    for agent_id in (initiator, partner):
        _ensure_free(tx, agent_id)
    cursor = tx.run(
        "INSERT INTO pairs (status, initiator, partner, objective, created_at)"
        " VALUES ('pending', ?, ?, ?, ?)",
        (initiator, partner, objective, tx.now),
    )
    pair_id = int(cursor.lastrowid or 0)
    invite = sql_messages.send(tx, _invite(pair_id, initiator, partner, objective, sent_by))
    tx.run("UPDATE pairs SET invite_message_id = ? WHERE id = ?", (invite.message.id, pair_id))
    if idempotency_key is not None:
        sql_idempotency.remember(tx, "pair", initiator, idempotency_key, pair_id, print_)
    return _announce(tx, pair_id), True


def _replayed_pair(tx: Tx, initiator: str, key: str, print_: str) -> Pair | None:
    ref = sql_idempotency.find(tx, "pair", initiator, key, print_)
    return None if ref is None else get(tx, ref)


def _resolve_partner(tx: Tx, initiator: str, to: str) -> str:
    try:
        candidates = rules.pair_candidates(to, sql_agents.all_agents(tx), initiator)
    except rules.PairTargetError as exc:
        raise invalid(str(exc)) from None
    if not candidates:
        raise not_found(f"no agent other than '{initiator}' that is not offline matches '{to}'")
    if len(candidates) > 1:
        ids = [a.id for a in candidates]
        raise conflict(
            "ambiguous_target",
            f"'{to}' matches {len(ids)} agents; name one with id:<agentId>",
            candidates=ids,
        )
    return candidates[0].id


def _ensure_free(tx: Tx, agent_id: str) -> None:
    row = tx.one(
        f"SELECT id, status FROM pairs WHERE status IN ({placeholders(len(OPEN))})"
        " AND (initiator = ? OR partner = ?) ORDER BY id LIMIT 1",
        (*OPEN, agent_id, agent_id),
    )
    if row is not None:
        raise conflict(
            "busy",
            f"agent '{agent_id}' is already in {row['status']} pair {row['id']}",
            agent=agent_id,
            pairId=row["id"],
        )


def _invite(
    pair_id: int, initiator: str, partner: str, objective: str | None, sent_by: str | None
) -> MessageDraft:
    about = f": {objective}" if objective else ""
    return MessageDraft(
        sender=initiator,
        to=direct_target(partner),
        subject="pair invite",
        body=f"{initiator} invites you to pair session {pair_id}{about}",
        meta={"pairId": pair_id, "type": "pair.invite", "objective": objective},
        sent_by=sent_by,
    )


def direct_target(agent_id: str) -> str:
    """A `to` that names exactly this agent, even when its id looks like a selector."""
    return f"id:{agent_id}" if ":" in agent_id or agent_id == "broadcast" else agent_id


# --------------------------------------------------------------------------- transitions


def act(tx: Tx, pair_id: int, action: str, agent: str, reason: str | None) -> Pair:
    """accept, reject or hangup by a participant."""
    pair = require(tx, pair_id)
    status = _checked(pair, action, agent)
    if status == "active":
        tx.run(
            "UPDATE pairs SET status = 'active', accepted_at = ? WHERE id = ?", (tx.now, pair_id)
        )
    else:
        _finish(tx, pair_id, status, agent, reason)
    return _announce(tx, pair_id)


def _checked(pair: Pair, action: str, agent: str | None) -> str:
    role = rules.role_of(pair.initiator, pair.partner, agent)
    try:
        return rules.next_status(pair.status, action, role)
    except rules.PairRuleError as exc:
        message = f"pair {pair.id}: {exc.message}"
        if exc.code == "forbidden":
            raise forbidden(message) from None
        raise conflict(exc.code, message, status=pair.status) from None


def _finish(tx: Tx, pair_id: int, status: str, by: str | None, reason: str | None) -> None:
    tx.run(
        "UPDATE pairs SET status = ?, ended_at = ?, ended_by = ?, reason = ? WHERE id = ?",
        (status, tx.now, by, reason, pair_id),
    )


def _announce(tx: Tx, pair_id: int) -> Pair:
    pair = require(tx, pair_id)
    tx.emit("pair.updated", pair.to_json(), pair.participants)
    return pair


def send_message(
    tx: Tx, pair_id: int, sender: str, body: str, idempotency_key: str | None,
    sent_by: str | None = None,
) -> SendResult:
    """A normal relay message to the other participant, tagged with meta.pairId."""
    pair = require(tx, pair_id)
    if idempotency_key is None or not _is_replay(tx, sender, idempotency_key):
        _checked(pair, "message", sender)
    draft = MessageDraft(
        sender=sender,
        to=direct_target(pair.other(sender)),
        body=body,
        meta={"pairId": pair_id, "type": "pair.message"},
        idempotency_key=idempotency_key,
        sent_by=sent_by,
    )
    return sql_messages.send(tx, draft)


def _is_replay(tx: Tx, sender: str, key: str) -> bool:
    """A retry of a send that committed: answer it even if the pair has ended since."""
    return sql_idempotency.find(tx, "message", sender, key) is not None


# --------------------------------------------------------------------------- housekeeping


def reap(tx: Tx, pending_ttl_ms: int) -> dict[str, list[Pair]]:
    """Expire stale invites; end open pairs whose participant is no longer registered."""
    return {"expired": _expire_pending(tx, pending_ttl_ms), "ended": _end_orphaned(tx)}


def _expire_pending(tx: Tx, pending_ttl_ms: int) -> list[Pair]:
    rows = tx.all(
        "SELECT id FROM pairs WHERE status = 'pending' AND created_at <= ? ORDER BY id",
        (tx.now - pending_ttl_ms,),
    )
    expired = []
    for row in rows:
        _finish(tx, row["id"], "expired", None, "the invite was not answered in time")
        expired.append(_announce(tx, row["id"]))
    return expired


def _end_orphaned(tx: Tx) -> list[Pair]:
    rows = tx.all(
        f"SELECT p.id, p.initiator, p.partner FROM pairs p"
        f" WHERE p.status IN ({placeholders(len(OPEN))}) AND ("
        " NOT EXISTS (SELECT 1 FROM agents a WHERE a.id = p.initiator) OR"
        " NOT EXISTS (SELECT 1 FROM agents a WHERE a.id = p.partner)) ORDER BY p.id",
        OPEN,
    )
    ended = []
    for row in rows:
        gone = row["initiator"] if sql_agents.get(tx, row["initiator"]) is None else row["partner"]
        _finish(tx, row["id"], "ended", None, f"agent '{gone}' is no longer registered")
        ended.append(_announce(tx, row["id"]))
    return ended

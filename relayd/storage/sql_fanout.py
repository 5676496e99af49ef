"""Fan-out stored once: shared audiences for selector messages (migration 0006).

A selector message points at an audience: the agents its target matched when it was sent,
stored once and shared by every message sent while those agents stay the same. The sender is
never its own recipient, so every query leaves it out (``m.sender != agent``) instead of each
sender getting its own copy of the set. The writer keeps the resolved audiences in memory,
keyed by the target and valid for one ``agents_generation`` (bumped by triggers whenever an
agent appears, goes, or changes what a target matches), so a burst of broadcasts resolves the
target once and writes one message row each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from relayd.domain.models import Recipients
from relayd.domain.targets import Target, recipients
from relayd.storage import sql_agents
from relayd.storage.sqlite_tx import Tx, dumps

MAX_CACHED = 256  # audiences kept in memory per generation


@dataclass(frozen=True)
class Audience:
    id: int
    members: tuple[str, ...]  # sorted
    lookup: frozenset[str]
    members_json: str  # the sorted list as JSON, for 201 answers that list the recipients

    def recipients_of(self, sender: str) -> list[str]:
        if sender not in self.lookup:
            return list(self.members)
        return [m for m in self.members if m != sender]

    def recipients_json(self, sender: str) -> str:
        return self.members_json if sender not in self.lookup else dumps(
            self.recipients_of(sender)
        )


class FanoutCache:
    """The writer's resolved audiences; only the writer thread touches it."""

    def __init__(self) -> None:
        self.generation = -1
        self.by_target: dict[tuple[str, str, str | None], Audience | None] = {}
        self.by_id: dict[int, Audience] = {}
        self.uncommitted = False  # holds an audience the open transaction created

    def committed(self) -> None:
        self.uncommitted = False

    def rolled_back(self) -> None:
        """A rollback may remove audiences this cache holds: then forget everything."""
        if self.uncommitted:
            self.invalidate()

    def sync(self, tx: Tx) -> None:
        generation = int(tx.scalar("SELECT agents_generation FROM fanout_state") or 0)
        if generation != self.generation:
            self.generation = generation
            self.by_target.clear()
            self.by_id.clear()

    def invalidate(self) -> None:
        self.uncommitted = False
        self.generation = -1
        self.by_target.clear()
        self.by_id.clear()

    def resolve(self, tx: Tx, target: Target, channel: str | None) -> Audience | None:
        """The audience a selector message sent now reaches (None: nobody matches). Call
        sync() first in each transaction."""
        key = (target.kind, target.value, channel)
        if key in self.by_target:
            return self.by_target[key]
        # the sender is left out by the queries, so resolve with a sender no agent can be
        members = recipients(target, sql_agents.all_agents(tx), "", channel)
        audience = None if not members else self._stored(tx, members)
        if len(self.by_target) >= MAX_CACHED:
            self.by_target.clear()
        self.by_target[key] = audience
        if audience is not None:
            self._keep(audience)
        return audience

    def get(self, tx: Tx, audience_id: int) -> Audience:
        audience = self.by_id.get(audience_id)
        if audience is None:
            members = tuple(
                r[0]
                for r in tx.all(
                    "SELECT agent_id FROM audience_members WHERE audience_id = ?"
                    " ORDER BY agent_id",
                    (audience_id,),
                )
            )
            audience = Audience(audience_id, members, frozenset(members), dumps(list(members)))
            self._keep(audience)
        return audience

    def _keep(self, audience: Audience) -> None:
        if len(self.by_id) >= MAX_CACHED:
            self.by_id.clear()
        self.by_id[audience.id] = audience


    def _stored(self, tx: Tx, members: Sequence[str]) -> Audience:
        """The audience row for exactly these members: an existing one, or a new one."""
        text = dumps(list(members))
        digest = hashlib.sha256(text.encode()).hexdigest()
        found = tx.scalar("SELECT id FROM audiences WHERE digest = ?", (digest,))
        if found is None:
            cursor = tx.run(
                "INSERT INTO audiences (digest, size) VALUES (?, ?)", (digest, len(members))
            )
            found = int(cursor.lastrowid or 0)
            tx.run(
                "INSERT INTO audience_members (agent_id, audience_id)"
                f" SELECT j.value, CAST(? AS INTEGER) FROM {tx.json_values('?', 'j')}",
                (found, text),
            )
            self.uncommitted = True
        return Audience(int(found), tuple(members), frozenset(members), text)


def cache(tx: Tx) -> FanoutCache:
    """The writer's cache of resolved audiences (a throwaway one outside the writer)."""
    found = tx.fanout_cache
    if not isinstance(found, FanoutCache):
        found = tx.fanout_cache = FanoutCache()
    return found


# ---------------------------------------------------------------------- who is a recipient

# A message's recipients: its deliveries rows (direct and late deliveries, read state) and,
# for a selector message, the members of its audience other than the sender. `:agent` and the
# message alias `m` are bound by the including query.
AUDIENCE_MEMBER_SQL = (
    "(m.audience_id IS NOT NULL AND m.sender != :agent AND EXISTS (SELECT 1 FROM"
    " audience_members am WHERE am.agent_id = :agent AND am.audience_id = m.audience_id))"
)
DELIVERY_ROW_SQL = (
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.agent_id = :agent AND d.message_id = m.id)"
)


def is_recipient(tx: Tx, message_id: int, agent_id: str) -> bool:
    return (
        tx.scalar(
            f"SELECT 1 FROM messages m WHERE m.id = :message AND ({DELIVERY_ROW_SQL}"
            f" OR {AUDIENCE_MEMBER_SQL})",
            {"message": message_id, "agent": agent_id},
        )
        is not None
    )


def recipients_now(tx: Tx, message_id: int) -> list[str]:
    """Every current recipient of a message, sorted."""
    row = tx.one("SELECT sender, audience_id FROM messages WHERE id = ?", (message_id,))
    rows = {
        r[0] for r in tx.all("SELECT agent_id FROM deliveries WHERE message_id = ?", (message_id,))
    }
    if row is not None and row["audience_id"] is not None:
        cache(tx).sync(tx)
        rows.update(cache(tx).get(tx, row["audience_id"]).recipients_of(row["sender"]))
    return sorted(rows)


def live_recipients(tx: Tx, message_id: int, also: Sequence[str] = ()) -> Recipients:
    """The in-memory lookup live events check readers against: the message's recipients
    (without copying a shared audience) plus `also`."""
    row = tx.one("SELECT sender, audience_id FROM messages WHERE id = ?", (message_id,))
    extra = {
        r[0] for r in tx.all("SELECT agent_id FROM deliveries WHERE message_id = ?", (message_id,))
    }
    extra.update(also)
    if row is None or row["audience_id"] is None:
        return Recipients(frozenset(), None, frozenset(extra))
    cache(tx).sync(tx)
    audience = cache(tx).get(tx, row["audience_id"])
    return Recipients(audience.lookup, row["sender"], frozenset(extra))


def forget_agent(tx: Tx, agent_id: str) -> None:
    """A removed agent leaves its audiences (as it loses its deliveries rows), so one that
    comes back under the same id does not find old messages; those audiences no longer match
    their digest, so no new message reuses them."""
    tx.run(
        "UPDATE messages SET audience_size = audience_size - 1 WHERE sender != ? AND"
        " audience_id IN (SELECT audience_id FROM audience_members WHERE agent_id = ?)",
        (agent_id, agent_id),
    )
    tx.run(
        "UPDATE audiences SET digest = NULL, size = size - 1"
        " WHERE id IN (SELECT audience_id FROM audience_members WHERE agent_id = ?)",
        (agent_id,),
    )
    tx.run("DELETE FROM audience_members WHERE agent_id = ?", (agent_id,))


def prune_unused(tx: Tx) -> int:
    """Audiences no message refers to any more (after retention or deletes)."""
    doomed = [
        r[0]
        for r in tx.all(
            "SELECT id FROM audiences a WHERE NOT EXISTS"
            " (SELECT 1 FROM messages m WHERE m.audience_id = a.id)"
        )
    ]
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        marks = ",".join("?" * len(chunk))
        tx.run(f"DELETE FROM audience_members WHERE audience_id IN ({marks})", chunk)
        tx.run(f"DELETE FROM audiences WHERE id IN ({marks})", chunk)
    if doomed:
        # other writers (replicas on one PostgreSQL) may hold them too: a new generation
        tx.run("UPDATE fanout_state SET agents_generation = agents_generation + 1")
        cache(tx).invalidate()
    return len(doomed)

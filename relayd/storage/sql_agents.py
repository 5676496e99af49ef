"""Agent operations (run on the SQLite writer or reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

from relayd.domain import sessions
from relayd.domain.models import Agent
from relayd.domain.sessions import SessionGuard
from relayd.errors import ApiError, conflict, not_found
from relayd.storage.base import AgentFilter
from relayd.storage.sqlite_tx import Tx, dumps, loads

JSON_FIELDS = ("tags", "capabilities", "channels", "meta")
PLAIN_FIELDS = ("label", "machine", "project", "provider", "status", "approval", "version")


def row_to_agent(row: sqlite3.Row) -> Agent:
    return Agent(
        id=row["id"],
        label=row["label"],
        machine=row["machine"],
        project=row["project"],
        provider=row["provider"],
        tags=loads(row["tags"], []),
        capabilities=loads(row["capabilities"], ["chat"]),
        channels=loads(row["channels"], ["*"]),
        status=row["status"],
        approval=row["approval"],
        meta=loads(row["meta"], {}),
        version=row["version"],
        registered_at=row["registered_at"],
        last_seen_at=row["last_seen_at"],
        epoch=row["epoch"],
        instance_id=row["instance_id"],
    )


def get(tx: Tx, agent_id: str) -> Agent | None:
    row = tx.one("SELECT * FROM agents WHERE id = ?", (agent_id,))
    return None if row is None else row_to_agent(row)


def all_agents(tx: Tx) -> list[Agent]:
    return [row_to_agent(r) for r in tx.all("SELECT * FROM agents ORDER BY id")]


def list_agents(tx: Tx, flt: AgentFilter) -> list[Agent]:
    agents = all_agents(tx)
    return [a for a in agents if _passes(a, flt)]


def _passes(agent: Agent, flt: AgentFilter) -> bool:
    return (
        (flt.tag is None or flt.tag in agent.tags)
        and (flt.machine is None or agent.machine == flt.machine)
        and (flt.status is None or agent.status == flt.status)
        and (flt.capability is None or flt.capability in agent.capabilities)
        and not (flt.exclude_offline and agent.status == "offline")
    )


def register(tx: Tx, fields: dict[str, Any]) -> tuple[Agent, bool]:
    """Insert or update by id; an existing agent keeps what the request leaves out."""
    existing = get(tx, fields["id"])
    created = existing is None
    agent = existing or Agent(id=fields["id"], registered_at=tx.now)
    was_status = None if existing is None else existing.status
    agent.epoch, agent.instance_id = sessions.next_epoch(existing, fields.get("instance_id"))
    _apply(agent, fields)
    if "status" not in fields or agent.status == "offline":
        agent.status = "online"
    agent.last_seen_at = tx.now
    _save(tx, agent)
    if created or was_status != agent.status:
        tx.emit("agent.status", agent.to_json())
    return agent, created


def superseded_error(agent: Agent) -> ApiError:
    return conflict(
        "invalid_state",
        f"a newer session of agent '{agent.id}' took over (epoch {agent.epoch}); "
        "this session must stop acting for it",
        superseded=True, epoch=agent.epoch,
    )


def _guard(agent: Agent, guard: SessionGuard | None) -> None:
    if sessions.superseded(agent, guard):
        raise superseded_error(agent)


def heartbeat(tx: Tx, agent_id: str, status: str | None,
              guard: SessionGuard | None = None) -> Agent | None:
    agent = get(tx, agent_id)
    if agent is None:
        return None
    _guard(agent, guard)
    was_status = agent.status
    agent.status = status or ("online" if agent.status == "offline" else agent.status)
    agent.last_seen_at = tx.now
    _save(tx, agent)
    if was_status != agent.status:
        tx.emit("agent.status", agent.to_json())
    return agent


def update(tx: Tx, agent_id: str, changes: dict[str, Any],
           guard: SessionGuard | None = None) -> Agent | None:
    agent = get(tx, agent_id)
    if agent is None:
        return None
    _guard(agent, guard)
    _apply(agent, changes)
    _save(tx, agent)
    tx.emit("agent.status", agent.to_json())
    return agent


def delete(tx: Tx, agent_id: str) -> bool:
    if tx.run("DELETE FROM agents WHERE id = ?", (agent_id,)).rowcount == 0:
        return False
    tx.run("DELETE FROM deliveries WHERE agent_id = ?", (agent_id,))
    tx.emit("agent.removed", {"id": agent_id})
    return True


def require(tx: Tx, agent_id: str) -> Agent:
    agent = get(tx, agent_id)
    if agent is None:
        raise not_found(f"agent '{agent_id}' is not registered")
    return agent


def _apply(agent: Agent, fields: dict[str, Any]) -> None:
    for name in (*PLAIN_FIELDS, *JSON_FIELDS):
        if name in fields:
            setattr(agent, name, fields[name])


def _save(tx: Tx, agent: Agent) -> None:
    offline_since = tx.now if agent.status == "offline" else None
    tx.run(
        """INSERT INTO agents (id, label, machine, project, provider, tags, capabilities,
               channels, status, approval, meta, version, registered_at, last_seen_at,
               offline_since, epoch, instance_id)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(id) DO UPDATE SET label=excluded.label, machine=excluded.machine,
               project=excluded.project, provider=excluded.provider, tags=excluded.tags,
               capabilities=excluded.capabilities, channels=excluded.channels,
               status=excluded.status, approval=excluded.approval, meta=excluded.meta,
               version=excluded.version, last_seen_at=excluded.last_seen_at,
               epoch=excluded.epoch, instance_id=excluded.instance_id,
               offline_since=CASE WHEN excluded.status = 'offline'
                   THEN COALESCE(agents.offline_since, excluded.offline_since) ELSE NULL END""",
        (
            agent.id,
            agent.label,
            agent.machine,
            agent.project,
            agent.provider,
            dumps(agent.tags),
            dumps(agent.capabilities),
            dumps(agent.channels),
            agent.status,
            agent.approval,
            dumps(agent.meta),
            agent.version,
            agent.registered_at,
            agent.last_seen_at,
            offline_since,
            agent.epoch,
            agent.instance_id,
        ),
    )


def mark_stale(tx: Tx, last_seen_before_ms: int) -> list[Agent]:
    rows = tx.all(
        "SELECT * FROM agents WHERE status != 'offline' AND last_seen_at < ?",
        (last_seen_before_ms,),
    )
    stale = [row_to_agent(r) for r in rows]
    for agent in stale:
        agent.status = "offline"
        tx.run(
            "UPDATE agents SET status = 'offline', offline_since = ? WHERE id = ?",
            (tx.now, agent.id),
        )
        tx.emit("agent.status", agent.to_json())
    return stale


def offline_before(tx: Tx, offline_before_ms: int) -> list[str]:
    """Agents offline since before `offline_before_ms` (retention removes them)."""
    rows = tx.all(
        "SELECT id FROM agents WHERE status = 'offline' AND offline_since < ?",
        (offline_before_ms,),
    )
    return [r["id"] for r in rows]

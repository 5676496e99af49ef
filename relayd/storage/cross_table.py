"""Rules that span tables, above the per-table modules (storage/sql_*.py).

Each sql_* module owns its tables; what one change does to another table (a claim takes the
task with the message, a new agent is offered open claims, a removed agent leaves its
audiences, a dead callback enters the task's history) is decided here, so the table modules
never import each other in a circle.
"""

from __future__ import annotations

from typing import Any

from relayd.domain.models import Agent, Message
from relayd.domain.sessions import SessionGuard
from relayd.domain.targets import may_receive, parse_target
from relayd.domain.tasks import Task
from relayd.storage import sql_agents, sql_callbacks, sql_fanout, sql_messages, sql_tasks
from relayd.storage.sqlite_tx import Tx

# ---------------------------------------------------------------------- agents


def register_agent(tx: Tx, fields: dict[str, Any]) -> tuple[Agent, bool]:
    agent, created = sql_agents.register(tx, fields)
    offer_open_claims(tx, agent)
    return agent, created


def update_agent(
    tx: Tx, agent_id: str, changes: dict[str, Any], guard: SessionGuard | None = None
) -> Agent | None:
    agent = sql_agents.update(tx, agent_id, changes, guard)
    if agent is not None:
        offer_open_claims(tx, agent)
    return agent


def delete_agent(tx: Tx, agent_id: str) -> bool:
    if not sql_agents.delete(tx, agent_id):
        return False
    sql_fanout.forget_agent(tx, agent_id)
    return True


def prune_offline(tx: Tx, offline_before_ms: int) -> list[str]:
    removed = sql_agents.offline_before(tx, offline_before_ms)
    for agent_id in removed:
        delete_agent(tx, agent_id)
    return removed


def offer_open_claims(tx: Tx, agent: Agent) -> None:
    """Deliver unclaimed claimable selector messages that this agent now matches."""
    rows = tx.all(
        "SELECT m.id, m.sender, m.target, m.channel FROM messages m"
        " WHERE m.claimable = 1 AND m.claimed_by IS NULL"
        f" AND NOT {sql_fanout.DELIVERY_ROW_SQL} AND NOT {sql_fanout.AUDIENCE_MEMBER_SQL}",
        {"agent": agent.id},
    )
    for row in rows:
        target = parse_target(row["target"])
        if not target.is_direct and may_receive(target, agent, row["sender"], row["channel"]):
            tx.run(
                "INSERT INTO deliveries (agent_id, message_id) VALUES (?, ?)",
                (agent.id, row["id"]),
            )
            message = sql_messages.require(tx, row["id"])
            tx.emit("message.new", message.to_json(), [agent.id])


# ---------------------------------------------------------------------- claims


def claim_message(tx: Tx, message_id: int, agent_id: str) -> Message:
    message, took = sql_messages.take_claim(tx, message_id, agent_id)
    if took:
        if message.task_id is not None:  # the task's claim is this claim (one winner for both)
            sql_tasks.after_message_claim(tx, message.task_id, agent_id)
        sql_messages.announce_claim(tx, message_id, agent_id)
    return message


def claim_task(tx: Tx, task_id: int, agent_id: str) -> Task:
    """Claim a task and its message together; exactly one agent wins across both paths."""
    task = sql_tasks.claimable(tx, task_id, agent_id)
    if task.claimed_by == agent_id:
        return task
    if task.message_id is not None and sql_messages.get(tx, task.message_id) is not None:
        claim_message(tx, task.message_id, agent_id)
        return sql_tasks.require(tx, task_id)
    sql_tasks.claim_alone(tx, task, agent_id)
    return task


# ---------------------------------------------------------------------- callbacks


def callback_failed(
    tx: Tx, row_id: int, error: str, http_status: int | None, max_attempts: int, retry_at: int
) -> str:
    """A failed callback attempt; a delivery that gives up is recorded in its task's history."""
    outcome, dead = sql_callbacks.failed(tx, row_id, error, http_status, max_attempts, retry_at)
    if dead is not None:
        task_id, data = dead
        sql_tasks.add_event(tx, task_id, "callback_dead", None, data)
    return outcome

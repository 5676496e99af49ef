"""The session guard: which provider instance holds an agent.

Registering with an ``instanceId`` the agent does not hold yet starts a new epoch; a
heartbeat or status update that names an older epoch (or another instance in the same epoch)
comes from a session that was taken over, and is refused so two windows never fight.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayd.domain.models import Agent


@dataclass(frozen=True)
class SessionGuard:
    instance_id: str
    epoch: int


def next_epoch(agent: Agent | None, instance_id: str | None) -> tuple[int, str | None]:
    """The (epoch, instance) after a registration; a new instance takes over."""
    if agent is None:
        return 1, instance_id
    if instance_id is None or instance_id == agent.instance_id:
        return agent.epoch, agent.instance_id
    return agent.epoch + 1, instance_id


def superseded(agent: Agent, guard: SessionGuard | None) -> bool:
    """True when a newer session of this agent took over from the guard's instance."""
    if guard is None:
        return False
    return agent.epoch > guard.epoch or (
        agent.epoch == guard.epoch and agent.instance_id not in (None, guard.instance_id)
    )

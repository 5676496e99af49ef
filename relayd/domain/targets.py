"""Message targets: parsing `to` and resolving it into recipients.

Pure functions over a list of agents, so every storage backend resolves targets the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from relayd.domain.models import Agent

AGENT_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}\Z")  # \Z: "$" would allow a final newline
SELECTOR_KINDS = ("tag", "cap", "label", "machine")


@dataclass(frozen=True)
class Target:
    kind: str  # "agent", "broadcast" or one of SELECTOR_KINDS
    value: str

    @property
    def is_direct(self) -> bool:
        return self.kind == "agent"

    def matches(self, agent: Agent) -> bool:
        if self.kind == "agent":
            return agent.id == self.value
        if self.kind == "broadcast":
            return True
        if self.kind == "tag":
            return self.value in agent.tags
        if self.kind == "cap":
            return self.value in agent.capabilities
        if self.kind == "label":
            return agent.label == self.value
        return agent.machine == self.value


class TargetError(ValueError):
    pass


@lru_cache(maxsize=4096)
def parse_target(to: str) -> Target:
    """The target `to` names (TargetError if none). Cached: a send's target is read by the
    handler and again by storage, and senders repeat a few targets (a Target is frozen)."""
    if to == "broadcast":
        return Target("broadcast", "")
    prefix, sep, rest = to.partition(":")
    if sep and prefix in SELECTOR_KINDS:
        if not rest:
            raise TargetError(f"'to' selector '{prefix}:' needs a value")
        return Target(prefix, rest)
    agent_id = rest if sep and prefix == "id" else to
    if not AGENT_ID_RE.match(agent_id):
        raise TargetError(f"'to' is not a valid agent id or selector: {to!r}")
    return Target("agent", agent_id)


def recipients(
    target: Target, agents: Iterable[Agent], sender: str, channel: str | None
) -> list[str]:
    """Agent ids a message reaches: never the sender; selectors skip unsubscribed agents."""
    if target.is_direct:
        return [a.id for a in agents if a.id == target.value and a.id != sender]
    return sorted(
        a.id for a in agents if a.id != sender and target.matches(a) and a.subscribes(channel)
    )


def may_receive(target: Target, agent: Agent, sender: str, channel: str | None) -> bool:
    """Whether `agent` would be a recipient of a message to `target` sent now."""
    return bool(recipients(target, [agent], sender, channel))

"""Pair sessions: the state machine as a table, and who a pair request's `to` names.

Pure rules over plain values, so every storage backend applies them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relayd.domain.models import Agent
from relayd.domain.targets import SELECTOR_KINDS, Target

PAIR_STATUSES = ("pending", "active", "rejected", "ended", "expired")
OPEN_STATUSES = ("pending", "active")  # a participant of an open pair is busy
ACTIONS = ("accept", "reject", "hangup", "message", "expire")

INITIATOR, PARTNER, SYSTEM, OUTSIDER = "initiator", "partner", "system", "outsider"
PARTICIPANTS = frozenset({INITIATOR, PARTNER})


@dataclass(frozen=True)
class Rule:
    source: str
    action: str
    target: str
    roles: frozenset[str]


# Every allowed move; anything not listed is refused. "message" keeps the pair active.
RULES: tuple[Rule, ...] = (
    Rule("pending", "accept", "active", frozenset({PARTNER})),
    Rule("pending", "reject", "rejected", frozenset({PARTNER})),
    Rule("pending", "hangup", "ended", PARTICIPANTS),
    Rule("pending", "expire", "expired", frozenset({SYSTEM})),
    Rule("active", "hangup", "ended", PARTICIPANTS),
    Rule("active", "message", "active", PARTICIPANTS),
)
TRANSITIONS: dict[tuple[str, str], Rule] = {(r.source, r.action): r for r in RULES}


class PairRuleError(Exception):
    """A refused move: `code` is "forbidden" (who) or "invalid_state" (when)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def role_of(initiator: str, partner: str, agent_id: str | None) -> str:
    if agent_id is None:
        return SYSTEM
    if agent_id == initiator:
        return INITIATOR
    if agent_id == partner:
        return PARTNER
    return OUTSIDER


def next_status(status: str, action: str, role: str) -> str:
    """The status after `action` by `role`; raises PairRuleError when it is not allowed.

    Outsiders are refused before anything about the pair's state is revealed; then the state
    decides (409), then the role (403: e.g. the initiator cannot accept its own invite).
    """
    if role == OUTSIDER:
        raise PairRuleError("forbidden", "only the pair's participants may do this")
    rule = TRANSITIONS.get((status, action))
    if rule is None:
        raise PairRuleError("invalid_state", f"cannot {action} a pair that is {status}")
    if role not in rule.roles:
        allowed = " or ".join(sorted(rule.roles))
        raise PairRuleError("forbidden", f"only the {allowed} may {action} a {status} pair")
    return rule.target


# --------------------------------------------------------------------------- targets


class PairTargetError(ValueError):
    pass


def pair_candidates(to: str, agents: Iterable[Agent], initiator: str) -> list[Agent]:
    """Agents `to` names among those not offline, the initiator excluded, sorted by id."""
    matches = _matcher(to)
    return sorted(
        (a for a in agents if a.status != "offline" and a.id != initiator and matches(a)),
        key=lambda a: a.id,
    )


def _matcher(to: str) -> Callable[[Agent], bool]:
    prefix, sep, rest = to.partition(":")
    if sep and prefix in ("id", *SELECTOR_KINDS):
        if not rest:
            raise PairTargetError(f"'to' selector '{prefix}:' needs a value")
        if prefix == "id":
            return lambda agent: agent.id == rest
        return Target(prefix, rest).matches
    if not to.strip():
        raise PairTargetError("'to' must name an agent")
    return lambda agent: matches_word(agent, to)


def matches_word(agent: Agent, word: str) -> bool:
    """The bare-word rule: the word is the agent's id, label or provider, a tag or a capability."""
    return (
        word in (agent.id, agent.label, agent.provider)
        or word in agent.tags
        or word in agent.capabilities
    )

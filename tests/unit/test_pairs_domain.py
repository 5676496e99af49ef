"""The pair state machine table and the `to` matching rules, without HTTP or SQL."""

from __future__ import annotations

import itertools

import pytest

from relayd.domain.models import Agent
from relayd.domain.pairs import (
    ACTIONS,
    INITIATOR,
    OUTSIDER,
    PAIR_STATUSES,
    PARTNER,
    SYSTEM,
    PairRuleError,
    PairTargetError,
    next_status,
    pair_candidates,
    role_of,
)

ROLES = (INITIATOR, PARTNER, SYSTEM, OUTSIDER)

# (status, action, role) -> next status. Everything not listed here must be refused.
ALLOWED = {
    ("pending", "accept", PARTNER): "active",
    ("pending", "reject", PARTNER): "rejected",
    ("pending", "hangup", PARTNER): "ended",
    ("pending", "hangup", INITIATOR): "ended",
    ("pending", "expire", SYSTEM): "expired",
    ("active", "hangup", PARTNER): "ended",
    ("active", "hangup", INITIATOR): "ended",
    ("active", "message", PARTNER): "active",
    ("active", "message", INITIATOR): "active",
}


@pytest.mark.parametrize(("status", "action", "role"), sorted(ALLOWED))
def test_allowed_transitions(status: str, action: str, role: str) -> None:
    assert next_status(status, action, role) == ALLOWED[(status, action, role)]


REFUSED = [case for case in itertools.product(PAIR_STATUSES, ACTIONS, ROLES) if case not in ALLOWED]


@pytest.mark.parametrize(("status", "action", "role"), REFUSED)
def test_every_other_move_is_refused(status: str, action: str, role: str) -> None:
    with pytest.raises(PairRuleError) as caught:
        next_status(status, action, role)
    wrong_role_only = any((status, action, other) in ALLOWED for other in ROLES if other != role)
    if role == OUTSIDER or wrong_role_only:
        assert caught.value.code == "forbidden"
    else:
        assert caught.value.code == "invalid_state"


def test_terminal_states_have_no_way_out() -> None:
    for status, action, role in itertools.product(("rejected", "ended", "expired"), ACTIONS, ROLES):
        with pytest.raises(PairRuleError):
            next_status(status, action, role)


def test_outsider_is_refused_before_the_state_is_revealed() -> None:
    with pytest.raises(PairRuleError) as caught:
        next_status("ended", "accept", OUTSIDER)
    assert caught.value.code == "forbidden"


def test_roles() -> None:
    assert role_of("a", "b", "a") == INITIATOR
    assert role_of("a", "b", "b") == PARTNER
    assert role_of("a", "b", "c") == OUTSIDER
    assert role_of("a", "b", None) == SYSTEM


# --------------------------------------------------------------------------- matching

AGENTS = [
    Agent(id="me", label="reviewer", tags=["team"], capabilities=["review"]),
    Agent(id="alpha", label="Alpha Bot", provider="claude", tags=["team", "backend"]),
    Agent(id="beta", label="reviewer", provider="codex", capabilities=["chat", "review"]),
    Agent(id="gamma", machine="box-1", tags=["frontend"], status="busy"),
    Agent(id="delta", provider="claude", tags=["backend"], status="offline"),
    Agent(id="has:colon", tags=["colon"]),
]


def ids(to: str, initiator: str = "me") -> list[str]:
    return [a.id for a in pair_candidates(to, AGENTS, initiator)]


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("alpha", ["alpha"]),  # id
        ("Alpha Bot", ["alpha"]),  # label
        ("codex", ["beta"]),  # provider
        ("frontend", ["gamma"]),  # tag
        ("review", ["beta"]),  # capability (the initiator has it too, and is excluded)
        ("claude", ["alpha"]),  # delta is offline
        ("chat", ["alpha", "beta", "gamma", "has:colon"]),  # default capability
        ("backend", ["alpha"]),
        ("nobody", []),
    ],
)
def test_bare_word(to: str, expected: list[str]) -> None:
    assert ids(to) == expected


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("id:alpha", ["alpha"]),
        ("id:delta", []),  # offline
        ("id:me", []),  # the initiator
        ("id:has:colon", ["has:colon"]),
        ("label:reviewer", ["beta"]),
        ("tag:team", ["alpha"]),
        ("cap:review", ["beta"]),
        ("machine:box-1", ["gamma"]),
        ("tag:backend", ["alpha"]),
    ],
)
def test_prefixed_selectors(to: str, expected: list[str]) -> None:
    assert ids(to) == expected


def test_unknown_prefix_is_a_bare_word() -> None:
    assert ids("has:colon") == ["has:colon"]


def test_broadcast_is_not_special_for_pairs() -> None:
    assert ids("broadcast") == []


@pytest.mark.parametrize("to", ["id:", "tag:", "cap:", "label:", "machine:", "  "])
def test_malformed_targets(to: str) -> None:
    with pytest.raises(PairTargetError):
        pair_candidates(to, AGENTS, "me")

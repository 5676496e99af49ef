"""relayd.domain.targets: parsing `to` and resolving it into recipients."""

from __future__ import annotations

import pytest

from relayd.domain.models import Agent
from relayd.domain.targets import (
    AGENT_ID_RE,
    Target,
    TargetError,
    may_receive,
    parse_target,
    recipients,
)

AGENTS = [
    Agent(id="alice", tags=["team"], machine="m1", label="Lead"),
    Agent(id="bob", tags=["team", "back"], capabilities=["review"], machine="m1"),
    Agent(id="carol", capabilities=["review", "chat"], machine="m2", channels=["ops"]),
    Agent(id="dave", label="Lead", machine="m2", channels=[], status="offline"),
]


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("bob", Target("agent", "bob")),
        ("id:bob", Target("agent", "bob")),
        ("id:host:proj:1", Target("agent", "host:proj:1")),
        ("tag:team", Target("tag", "team")),
        ("cap:review", Target("cap", "review")),
        ("label:Lead Dev", Target("label", "Lead Dev")),
        ("machine:m1", Target("machine", "m1")),
        ("broadcast", Target("broadcast", "")),
        ("tag:a:b", Target("tag", "a:b")),
        ("other:thing", Target("agent", "other:thing")),
        ("a.b@c-d_e", Target("agent", "a.b@c-d_e")),
    ],
)
def test_parse(to: str, expected: Target) -> None:
    assert parse_target(to) == expected


@pytest.mark.parametrize(
    "to",
    ["", "tag:", "cap:", "label:", "machine:", "id:", "two words", "a/b", "é", "x" * 129, "bob\n"],
)
def test_parse_rejects(to: str) -> None:
    with pytest.raises(TargetError):
        parse_target(to)


def test_only_selector_prefixes_are_selectors() -> None:
    assert parse_target("broadcast:x").is_direct
    assert not parse_target("tag:x").is_direct


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("tag:team", ["bob"]),
        ("tag:back", ["bob"]),
        ("cap:review", ["bob", "carol"]),
        ("cap:chat", ["carol", "dave"]),
        ("label:Lead", ["dave"]),
        ("machine:m2", ["carol", "dave"]),
        ("broadcast", ["bob", "carol", "dave"]),
        ("tag:none", []),
    ],
)
def test_selectors_skip_the_sender_and_include_offline(to: str, expected: list[str]) -> None:
    assert recipients(parse_target(to), AGENTS, "alice", None) == expected


def test_channels_apply_to_selectors_only() -> None:
    assert recipients(parse_target("broadcast"), AGENTS, "x", "ops") == ["alice", "bob", "carol"]
    assert recipients(parse_target("broadcast"), AGENTS, "x", "random") == ["alice", "bob"]
    assert recipients(parse_target("dave"), AGENTS, "x", "ops") == ["dave"]


def test_direct_target() -> None:
    assert recipients(parse_target("id:carol"), AGENTS, "alice", None) == ["carol"]
    assert recipients(parse_target("ghost"), AGENTS, "alice", None) == []
    assert recipients(parse_target("alice"), AGENTS, "alice", None) == []


def test_may_receive() -> None:
    carol, dave = AGENTS[2], AGENTS[3]
    assert may_receive(parse_target("cap:review"), carol, "alice", None)
    assert not may_receive(parse_target("cap:review"), carol, "carol", None)
    assert not may_receive(parse_target("label:Lead"), dave, "alice", "ops")
    assert may_receive(parse_target("label:Lead"), dave, "alice", None)


def test_matches() -> None:
    bob = AGENTS[1]
    assert Target("tag", "back").matches(bob)
    assert Target("cap", "review").matches(bob)
    assert not Target("cap", "chat").matches(bob)
    assert Target("machine", "m1").matches(bob)
    assert not Target("label", "Lead").matches(bob)
    assert Target("agent", "bob").matches(bob)
    assert Target("broadcast", "").matches(bob)


@pytest.mark.parametrize("agent_id", ["a", "A-z_0.9:@", "x" * 128])
def test_agent_id_pattern_accepts(agent_id: str) -> None:
    assert AGENT_ID_RE.match(agent_id)


@pytest.mark.parametrize("agent_id", ["", "x" * 129, "a b", "a/b", "a\nb", "bob\n", "ü", "a\x00"])
def test_agent_id_pattern_rejects(agent_id: str) -> None:
    assert not AGENT_ID_RE.match(agent_id)

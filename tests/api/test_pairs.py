"""Pair sessions against a real relay: the state machine over HTTP, target resolution, busy,
pair messages, expiry, SSE audience, scopes and bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay

Json = dict[str, Any]


async def register(http: aiohttp.ClientSession, agent_id: str, **fields: Any) -> Json:
    resp = await http.post("/api/agents", json={"id": agent_id, **fields})
    assert resp.status == 201, await resp.text()
    agent: Json = await resp.json()
    return agent


async def call(
    http: aiohttp.ClientSession, method: str, path: str, expect: int, **kwargs: Any
) -> Json:
    resp = await http.request(method, path, **kwargs)
    text = await resp.text()
    assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
    data: Json = json.loads(text) if text else {}
    return data


async def invite(http: aiohttp.ClientSession, initiator: str, to: str, **extra: Any) -> Json:
    return await call(http, "POST", "/api/pairs", 201, json={"from": initiator, "to": to, **extra})


async def inbox(http: aiohttp.ClientSession, agent_id: str) -> list[Json]:
    data = await call(http, "GET", "/api/messages", 200, params={"for": agent_id})
    messages: list[Json] = data["messages"]
    return messages


async def pair_status(http: aiohttp.ClientSession, pair_id: int) -> str:
    status: str = (await call(http, "GET", f"/api/pairs/{pair_id}", 200))["status"]
    return status


# --------------------------------------------------------------------------- create


async def test_invite_creates_a_pending_pair_and_an_invite_message(
    http: aiohttp.ClientSession,
) -> None:
    for agent in ("alice", "bob", "carol"):
        await register(http, agent)
    pair = await invite(http, "alice", "bob", objective="fix the flaky test")
    assert pair["status"] == "pending"
    assert (pair["initiator"], pair["partner"]) == ("alice", "bob")
    assert pair["objective"] == "fix the flaky test"
    assert pair["createdAt"].endswith("Z")
    for field in ("acceptedAt", "endedAt", "endedBy", "reason"):
        assert pair[field] is None
    [message] = await inbox(http, "bob")
    assert message["from"] == "alice"
    assert message["meta"]["pairId"] == pair["id"]
    assert message["meta"]["type"] == "pair.invite"
    assert message["meta"]["objective"] == "fix the flaky test"
    assert await inbox(http, "alice") == []
    assert await inbox(http, "carol") == []
    assert await call(http, "GET", f"/api/pairs/{pair['id']}", 200) == pair


async def test_objective_is_optional(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    assert pair["objective"] is None


async def test_invite_retry_with_idempotency_key(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    await register(http, "bob")
    headers = {"Idempotency-Key": "invite-1"}
    body = {"from": "alice", "to": "bob"}
    first = await call(http, "POST", "/api/pairs", 201, json=body, headers=headers)
    again = await call(http, "POST", "/api/pairs", 200, json=body, headers=headers)
    assert again == first
    assert len(await inbox(http, "bob")) == 1  # one invite
    other_key = await call(
        http, "POST", "/api/pairs", 409, json=body, headers={"Idempotency-Key": "invite-2"}
    )
    assert other_key["code"] == "busy"


# --------------------------------------------------------------------------- state machine

ROLES = ("initiator", "partner", "outsider")
ACTIONS = ("accept", "reject", "hangup", "messages")
STATES = ("pending", "active", "rejected", "ended-while-pending", "ended", "expired")

# (state, action, role) -> (status code, status afterwards); anything else: 409, or 403 for
# outsiders and for the initiator answering its own invite.
ALLOWED = {
    ("pending", "accept", "partner"): (200, "active"),
    ("pending", "reject", "partner"): (200, "rejected"),
    ("pending", "hangup", "partner"): (200, "ended"),
    ("pending", "hangup", "initiator"): (200, "ended"),
    ("active", "hangup", "partner"): (200, "ended"),
    ("active", "hangup", "initiator"): (200, "ended"),
    ("active", "messages", "partner"): (201, "active"),
    ("active", "messages", "initiator"): (201, "active"),
}
WRONG_ROLE = {("pending", "accept", "initiator"), ("pending", "reject", "initiator")}


def expected(state: str, action: str, role: str) -> tuple[int, str]:
    status = "ended" if state.startswith("ended") else state
    if (state, action, role) in ALLOWED:
        return ALLOWED[(state, action, role)]
    if role == "outsider" or (state, action, role) in WRONG_ROLE:
        return 403, status
    return 409, status


async def pair_in_state(relay: Relay, http: aiohttp.ClientSession, state: str, n: int) -> Json:
    names = {role: f"{role}-{state}-{n}" for role in ROLES}
    for name in names.values():
        await register(http, name)
    pair = await invite(http, names["initiator"], f"id:{names['partner']}")
    path = f"/api/pairs/{pair['id']}"
    partner = {"agent": names["partner"]}
    if state in ("active", "ended"):
        await call(http, "POST", f"{path}/accept", 200, json=partner)
    if state in ("ended", "ended-while-pending"):
        await call(http, "POST", f"{path}/hangup", 200, json=partner)
    if state == "rejected":
        await call(http, "POST", f"{path}/reject", 200, json=partner)
    if state == "expired":
        await relay.ctx.store.reap_pairs(pending_ttl_ms=0)
    pair = await call(http, "GET", path, 200)
    assert pair["status"] == ("ended" if state.startswith("ended") else state)
    return {**pair, "names": names}


@pytest.mark.parametrize("state", STATES)
async def test_every_transition_from(relay: Relay, http: aiohttp.ClientSession, state: str) -> None:
    n = 0
    for action in ACTIONS:
        for role in ROLES:
            n += 1
            pair = await pair_in_state(relay, http, state, n)
            actor = pair["names"][role]
            body = {"from": actor, "body": "hi"} if action == "messages" else {"agent": actor}
            code, after = expected(state, action, role)
            resp = await http.post(f"/api/pairs/{pair['id']}/{action}", json=body)
            answer = await resp.json()
            assert resp.status == code, (state, action, role, answer)
            if code == 409:
                assert answer["code"] == "invalid_state"
            elif code == 403:
                assert answer["code"] == "forbidden"
            assert await pair_status(http, pair["id"]) == after, (state, action, role)


async def test_accept_then_hangup_records_who_and_why(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    accepted = await call(
        http, "POST", f"/api/pairs/{pair['id']}/accept", 200, json={"agent": "bob"}
    )
    assert accepted["status"] == "active" and accepted["acceptedAt"].endswith("Z")
    ended = await call(
        http,
        "POST",
        f"/api/pairs/{pair['id']}/hangup",
        200,
        json={"agent": "alice", "reason": "done"},
    )
    assert ended["status"] == "ended"
    assert (ended["endedBy"], ended["reason"]) == ("alice", "done")
    assert ended["endedAt"].endswith("Z")


async def test_reject_records_the_reason(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    rejected = await call(
        http,
        "POST",
        f"/api/pairs/{pair['id']}/reject",
        200,
        json={"agent": "bob", "reason": "busy elsewhere"},
    )
    assert rejected["status"] == "rejected"
    assert (rejected["endedBy"], rejected["reason"]) == ("bob", "busy elsewhere")


# --------------------------------------------------------------------------- busy


@pytest.mark.parametrize("first_state", ["pending", "active"])
async def test_busy_either_side(http: aiohttp.ClientSession, first_state: str) -> None:
    for agent in ("a", "b", "c", "d"):
        await register(http, agent)
    pair = await invite(http, "a", "b")
    if first_state == "active":
        await call(http, "POST", f"/api/pairs/{pair['id']}/accept", 200, json={"agent": "b"})
    initiator_busy = await call(http, "POST", "/api/pairs", 409, json={"from": "a", "to": "c"})
    assert initiator_busy["code"] == "busy"
    assert initiator_busy["pairId"] == pair["id"] and initiator_busy["agent"] == "a"
    partner_busy = await call(http, "POST", "/api/pairs", 409, json={"from": "c", "to": "b"})
    assert partner_busy["code"] == "busy" and partner_busy["agent"] == "b"
    partner_initiating = await call(http, "POST", "/api/pairs", 409, json={"from": "b", "to": "d"})
    assert partner_initiating["code"] == "busy" and partner_initiating["agent"] == "b"
    listed = await call(http, "GET", "/api/pairs", 200)
    assert [p["id"] for p in listed["pairs"]] == [pair["id"]]
    await call(http, "POST", f"/api/pairs/{pair['id']}/hangup", 200, json={"agent": "a"})
    await invite(http, "c", "b")
    await invite(http, "a", "d")


async def test_concurrent_invites_make_one_pair(http: aiohttp.ClientSession) -> None:
    await register(http, "target")
    for n in range(10):
        await register(http, f"caller{n}")
    responses = await asyncio.gather(
        *(http.post("/api/pairs", json={"from": f"caller{n}", "to": "target"}) for n in range(10))
    )
    assert sorted(r.status for r in responses) == [201] + [409] * 9
    assert len((await call(http, "GET", "/api/pairs", 200))["pairs"]) == 1


# --------------------------------------------------------------------------- targets


async def test_ambiguous_target_lists_candidates(http: aiohttp.ClientSession) -> None:
    await register(http, "me")
    await register(http, "rev-b", capabilities=["review"])
    await register(http, "rev-a", capabilities=["review"])
    await register(http, "other")
    for to in ("review", "cap:review"):
        answer = await call(http, "POST", "/api/pairs", 409, json={"from": "me", "to": to})
        assert answer["code"] == "ambiguous_target"
        assert answer["candidates"] == ["rev-a", "rev-b"]
    assert (await call(http, "GET", "/api/pairs", 200))["pairs"] == []
    assert await inbox(http, "rev-a") == []


@pytest.mark.parametrize(
    ("to", "fields"),
    [
        ("target", {}),
        ("Pair Buddy", {"label": "Pair Buddy"}),
        ("gemini", {"provider": "gemini"}),
        ("oncall", {"tags": ["oncall"]}),
        ("debugging", {"capabilities": ["debugging"]}),
    ],
)
async def test_bare_word_matches(http: aiohttp.ClientSession, to: str, fields: Json) -> None:
    await register(
        http,
        "me",
        tags=["oncall"],
        capabilities=["debugging"],
        provider="gemini",
        label="Pair Buddy",
    )
    await register(http, "decoy", label="someone", provider="claude", tags=["x"])
    await register(http, "target", **fields)
    pair = await invite(http, "me", to)
    assert pair["partner"] == "target"


@pytest.mark.parametrize(
    ("to", "fields"),
    [
        ("id:target", {}),
        ("label:The Target", {"label": "The Target"}),
        ("tag:oncall", {"tags": ["oncall"]}),
        ("cap:debugging", {"capabilities": ["debugging"]}),
        ("machine:box-7", {"machine": "box-7"}),
    ],
)
async def test_prefixed_targets(http: aiohttp.ClientSession, to: str, fields: Json) -> None:
    await register(http, "me", **fields)
    await register(http, "decoy", machine="box-1")
    await register(http, "target", **fields)
    pair = await invite(http, "me", to)
    assert pair["partner"] == "target"


async def test_offline_agents_are_not_candidates(http: aiohttp.ClientSession) -> None:
    await register(http, "me")
    await register(http, "sleeper", tags=["team"])
    await register(http, "awake", tags=["team"])
    await call(http, "PATCH", "/api/agents/sleeper", 200, json={"status": "offline"})
    for to in ("sleeper", "id:sleeper"):
        answer = await call(http, "POST", "/api/pairs", 404, json={"from": "me", "to": to})
        assert answer["code"] == "not_found"
    pair = await invite(http, "me", "team")  # not ambiguous: sleeper is offline
    assert pair["partner"] == "awake"


async def test_the_initiator_is_never_its_own_partner(http: aiohttp.ClientSession) -> None:
    await register(http, "me", tags=["team"])
    await register(http, "mate", tags=["team"])
    answer = await call(http, "POST", "/api/pairs", 404, json={"from": "me", "to": "me"})
    assert answer["code"] == "not_found"
    pair = await invite(http, "me", "tag:team")
    assert pair["partner"] == "mate"


async def test_unknown_target_and_unknown_initiator(http: aiohttp.ClientSession) -> None:
    await register(http, "me")
    await register(http, "you")
    nobody = await call(http, "POST", "/api/pairs", 404, json={"from": "me", "to": "nobody"})
    assert nobody["code"] == "not_found"
    stranger = await call(http, "POST", "/api/pairs", 404, json={"from": "ghost", "to": "you"})
    assert "ghost" in stranger["error"]
    assert (await call(http, "GET", "/api/pairs", 200))["pairs"] == []


# --------------------------------------------------------------------------- pair messages


async def test_pair_messages_reach_only_the_other_participant(
    http: aiohttp.ClientSession,
) -> None:
    for agent in ("alice", "bob", "carol"):
        await register(http, agent, tags=["team"])
    pair = await invite(http, "alice", "bob")
    await call(http, "POST", f"/api/pairs/{pair['id']}/accept", 200, json={"agent": "bob"})
    path = f"/api/pairs/{pair['id']}/messages"
    sent = await call(http, "POST", path, 201, json={"from": "alice", "body": "look at line 42"})
    assert sent["recipients"] == ["bob"]
    assert sent["meta"]["pairId"] == pair["id"] and sent["to"] == "bob"
    reply = await call(http, "POST", path, 201, json={"from": "bob", "body": "on it"})
    assert reply["recipients"] == ["alice"]
    bob_sees = [m for m in await inbox(http, "bob") if m["meta"].get("type") != "pair.invite"]
    assert [(m["id"], m["body"], m["meta"]["pairId"]) for m in bob_sees] == [
        (sent["id"], "look at line 42", pair["id"])
    ]
    alice_sees = await inbox(http, "alice")
    assert [(m["body"], m["from"]) for m in alice_sees] == [("on it", "bob")]
    assert await inbox(http, "carol") == []
    fetched = await call(http, "GET", f"/api/messages/{sent['id']}", 200)
    assert fetched["body"] == "look at line 42"


async def test_pair_message_retry_with_idempotency_key(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    await call(http, "POST", f"/api/pairs/{pair['id']}/accept", 200, json={"agent": "bob"})
    path = f"/api/pairs/{pair['id']}/messages"
    headers = {"Idempotency-Key": "k-1"}
    first = await call(
        http, "POST", path, 201, json={"from": "alice", "body": "x"}, headers=headers
    )
    again = await call(
        http, "POST", path, 200, json={"from": "alice", "body": "x"}, headers=headers
    )
    assert again["id"] == first["id"]
    assert len(await inbox(http, "bob")) == 2  # the invite and one message


# --------------------------------------------------------------------------- expiry & reaper


async def test_pending_invites_expire(relay_factory: Callable[..., Any]) -> None:
    relay = await relay_factory(pending_pair_ttl_ms=1000, reap_interval_ms=50)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        for agent in ("alice", "bob", "carol"):
            await register(http, agent)
        pending = await invite(http, "alice", "bob")
        for _ in range(100):
            if await pair_status(http, pending["id"]) == "expired":
                break
            await asyncio.sleep(0.05)
        expired = await call(http, "GET", f"/api/pairs/{pending['id']}", 200)
        assert expired["status"] == "expired"
        assert expired["endedAt"].endswith("Z") and expired["endedBy"] is None
        assert expired["reason"]
        await call(http, "POST", f"/api/pairs/{pending['id']}/accept", 409, json={"agent": "bob"})
        # both are free again
        again = await invite(http, "alice", "bob")
        await call(http, "POST", f"/api/pairs/{again['id']}/accept", 200, json={"agent": "bob"})


async def test_only_pending_pairs_expire(relay: Relay, http: aiohttp.ClientSession) -> None:
    for agent in ("a", "b", "c", "d"):
        await register(http, agent)
    active = await invite(http, "a", "b")
    await call(http, "POST", f"/api/pairs/{active['id']}/accept", 200, json={"agent": "b"})
    pending = await invite(http, "c", "d")
    outcome = await relay.ctx.store.reap_pairs(pending_ttl_ms=0)
    assert [p.id for p in outcome["expired"]] == [pending["id"]]
    assert await pair_status(http, active["id"]) == "active"
    assert (await relay.reaper.run_once())["pairs"] == {"expired": 0, "ended": 0}


async def test_a_removed_participant_ends_the_pair(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    await call(http, "POST", f"/api/pairs/{pair['id']}/accept", 200, json={"agent": "bob"})
    await call(http, "DELETE", "/api/agents/bob", 204)
    outcome = await relay.reaper.run_once()
    assert outcome["pairs"] == {"expired": 0, "ended": 1}
    ended = await call(http, "GET", f"/api/pairs/{pair['id']}", 200)
    assert ended["status"] == "ended" and "bob" in ended["reason"]


# --------------------------------------------------------------------------- SSE


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Json]]:
    kind: str | None = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            yield kind, json.loads(line.removeprefix("data: "))
            kind = None


async def collect_until(
    resp: aiohttp.ClientResponse, done: Callable[[str, Json], bool]
) -> list[tuple[str, Json]]:
    seen: list[tuple[str, Json]] = []

    async def read() -> None:
        async for kind, data in sse_events(resp):
            seen.append((kind, data))
            if done(kind, data):
                return

    await asyncio.wait_for(read(), 10)
    return seen


async def test_pair_updated_reaches_participants_only(http: aiohttp.ClientSession) -> None:
    for agent in ("alice", "bob", "carol", "dave"):
        await register(http, agent)
    start = (await call(http, "GET", "/api/stats", 200))["events"]["latestId"]
    streams = {
        agent: await http.get("/api/events", params={"for": agent, "lastEventId": str(start)})
        for agent in ("alice", "bob", "carol")
    }
    pair = await invite(http, "alice", "bob")
    path = f"/api/pairs/{pair['id']}"
    await call(http, "POST", f"{path}/accept", 200, json={"agent": "bob"})
    await call(http, "POST", f"{path}/hangup", 200, json={"agent": "alice", "reason": "done"})
    # a marker everyone sees last, so "nothing else arrived" is a real observation
    await call(
        http,
        "POST",
        "/api/messages",
        201,
        json={"from": "dave", "to": "broadcast", "body": "marker"},
    )

    def is_marker(kind: str, data: Json) -> bool:
        return kind == "message.new" and data["body"] == "marker"

    try:
        for agent in ("alice", "bob"):
            seen = await collect_until(streams[agent], is_marker)
            updates = [data for kind, data in seen if kind == "pair.updated"]
            assert [u["status"] for u in updates] == ["pending", "active", "ended"], agent
            assert all(u["id"] == pair["id"] for u in updates)
            assert updates[-1]["reason"] == "done"
        carol_seen = await collect_until(streams["carol"], is_marker)
        assert [kind for kind, _ in carol_seen] == ["message.new"]
    finally:
        for resp in streams.values():
            resp.close()


# --------------------------------------------------------------------------- listing & stats


async def test_list_filters(http: aiohttp.ClientSession) -> None:
    for agent in ("a", "b", "c", "d"):
        await register(http, agent)
    first = await invite(http, "a", "b")
    await call(http, "POST", f"/api/pairs/{first['id']}/reject", 200, json={"agent": "b"})
    second = await invite(http, "c", "d")
    third = await invite(http, "a", "b")
    await call(http, "POST", f"/api/pairs/{third['id']}/accept", 200, json={"agent": "b"})

    async def ids(**params: str) -> list[int]:
        data = await call(http, "GET", "/api/pairs", 200, params=params)
        return [p["id"] for p in data["pairs"]]

    assert await ids() == [first["id"], second["id"], third["id"]]
    assert await ids(agent="b") == [first["id"], third["id"]]
    assert await ids(agent="d") == [second["id"]]
    assert await ids(status="pending") == [second["id"]]
    assert await ids(status="rejected,active") == [first["id"], third["id"]]
    assert await ids(agent="a", status="active") == [third["id"]]
    assert await ids(agent="nobody") == []
    assert await ids(limit="1") == [first["id"]]


async def test_stats_count_pairs_by_status(http: aiohttp.ClientSession) -> None:
    for agent in ("a", "b", "c", "d"):
        await register(http, agent)
    first = await invite(http, "a", "b")
    await call(http, "POST", f"/api/pairs/{first['id']}/accept", 200, json={"agent": "b"})
    await invite(http, "c", "d")
    pairs = (await call(http, "GET", "/api/stats", 200))["pairs"]
    assert pairs == {"total": 2, "pending": 1, "active": 1, "rejected": 0, "ended": 0, "expired": 0}


async def test_scopes(relay_factory: Callable[..., Any]) -> None:
    reader = Integration(name="reader", token="reader-token", scopes=frozenset({"pairs:read"}))
    relay = await relay_factory(token="admin-token-123", integrations=(reader,))
    admin = {"Authorization": "Bearer admin-token-123"}
    async with aiohttp.ClientSession(base_url=relay.url, headers=admin) as http:
        await register(http, "a")
        await register(http, "b")
    limited = {"Authorization": "Bearer reader-token"}
    async with aiohttp.ClientSession(base_url=relay.url, headers=limited) as http:
        await call(http, "GET", "/api/pairs", 200)
        denied = await call(http, "POST", "/api/pairs", 403, json={"from": "a", "to": "b"})
        assert denied["code"] == "forbidden"
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await call(http, "GET", "/api/pairs", 401)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/pairs", {"from": "alice"}),
        ("/api/pairs", {"to": "bob"}),
        ("/api/pairs", {"from": "alice", "to": 7}),
        ("/api/pairs", {"from": "bad id!", "to": "bob"}),
        ("/api/pairs", {"from": "alice", "to": ""}),
        ("/api/pairs", {"from": "alice", "to": "tag:"}),
        ("/api/pairs", {"from": "alice", "to": "bob", "objective": ["x"]}),
        ("/api/pairs/{id}/accept", {}),
        ("/api/pairs/{id}/accept", {"agent": 3}),
        ("/api/pairs/{id}/reject", {"agent": "bob", "reason": 5}),
        ("/api/pairs/{id}/hangup", {"agent": ""}),
        ("/api/pairs/{id}/messages", {"from": "alice"}),
        ("/api/pairs/{id}/messages", {"from": "alice", "body": ""}),
        ("/api/pairs/{id}/messages", {"from": "alice", "body": {"x": 1}}),
    ],
)
async def test_malformed_bodies(http: aiohttp.ClientSession, path: str, body: Json) -> None:
    await register(http, "alice")
    await register(http, "bob")
    pair = await invite(http, "alice", "bob")
    before = await call(http, "GET", "/api/pairs", 200)
    answer = await call(http, "POST", path.format(id=pair["id"]), 400, json=body)
    assert answer["code"] == "invalid_request"
    assert await call(http, "GET", "/api/pairs", 200) == before


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe"])
@pytest.mark.parametrize("path", ["/api/pairs", "/api/pairs/1/accept", "/api/pairs/1/messages"])
async def test_bodies_that_are_not_json_objects(
    http: aiohttp.ClientSession, path: str, raw: bytes
) -> None:
    answer = await call(
        http, "POST", path, 400, data=raw, headers={"Content-Type": "application/json"}
    )
    assert answer["code"] == "invalid_json"


async def test_unknown_pairs_and_bad_queries(http: aiohttp.ClientSession) -> None:
    await register(http, "alice")
    for path in ("/api/pairs/999", "/api/pairs/abc", "/api/pairs/0"):
        assert (await call(http, "GET", path, 404))["code"] == "not_found"
    for action in ("accept", "reject", "hangup"):
        await call(http, "POST", f"/api/pairs/999/{action}", 404, json={"agent": "alice"})
    await call(http, "POST", "/api/pairs/999/messages", 404, json={"from": "alice", "body": "x"})
    for params in (
        {"status": "open"},
        {"status": "pending,bogus"},
        {"agent": "bad id!"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
    ):
        answer = await call(http, "GET", "/api/pairs", 400, params=params)
        assert answer["code"] == "invalid_request"
    await call(http, "DELETE", "/api/pairs/1", 405)

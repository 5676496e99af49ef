"""/api/messages against a real relay: targets, channels, threads, inbox queries, long-poll,
idempotency, late claim offers, limits and deletion."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from relayd.daemon.relay import Relay
from tests.helpers import register


async def send(
    http: aiohttp.ClientSession, sender: str, to: str, body: str = "hi", **extra: Any
) -> dict[str, Any]:
    resp = await http.post("/api/messages", json={"from": sender, "to": to, "body": body, **extra})
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def inbox(http: aiohttp.ClientSession, agent: str, **params: Any) -> dict[str, Any]:
    resp = await http.get("/api/messages", params={"for": agent, **params})
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def bodies(http: aiohttp.ClientSession, agent: str, **params: Any) -> list[str]:
    return [m["body"] for m in (await inbox(http, agent, **params))["messages"]]


async def error_of(resp: aiohttp.ClientResponse, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    payload = await resp.json()
    assert payload["code"] == code
    assert payload["error"]
    return str(payload["error"])


@pytest.fixture
async def crew(http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """alice, bob, carol and dave with tags, capabilities, labels, machines and channels."""
    await register(http, "alice", tags=["team"], machine="m1", label="Lead")
    await register(http, "bob", tags=["team", "back"], capabilities=["review"], machine="m1")
    await register(
        http,
        "carol",
        tags=["front"],
        capabilities=["review"],
        label="Lead",
        machine="m2",
        channels=["ops"],
    )
    await register(http, "dave", machine="m2", channels=["deploys"])
    return http


async def test_send_answers_the_message_with_recipients(crew: aiohttp.ClientSession) -> None:
    resp = await crew.post(
        "/api/messages",
        json={"from": "alice", "to": "bob", "body": "b", "subject": "s", "meta": {"k": 1}},
    )
    assert resp.status == 201
    sent = await resp.json()
    assert sent["recipients"] == ["bob"]
    expected = {
        "from": "alice",
        "to": "bob",
        "body": "b",
        "subject": "s",
        "channel": None,
        "replyTo": None,
        "threadId": sent["id"],
        "claimable": False,
        "claimedBy": None,
        "claimedAt": None,
        "meta": {"k": 1},
    }
    assert {k: sent[k] for k in expected} == expected
    assert isinstance(sent["id"], int) and sent["id"] > 0
    assert sent["createdAt"].endswith("Z")
    got = await (await crew.get(f"/api/messages/{sent['id']}")).json()
    assert got["body"] == "b" and got["id"] == sent["id"]


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("bob", ["bob"]),
        ("id:bob", ["bob"]),
        ("tag:team", ["bob"]),  # the sender alice is never its own recipient
        ("tag:front", ["carol"]),
        ("cap:review", ["bob", "carol"]),
        ("cap:chat", ["dave"]),  # bob and carol declared only review
        ("label:Lead", ["carol"]),
        ("machine:m2", ["carol", "dave"]),
        ("broadcast", ["bob", "carol", "dave"]),
        ("tag:nobody", []),
        ("label:Nobody", []),
    ],
)
async def test_target_forms(crew: aiohttp.ClientSession, to: str, expected: list[str]) -> None:
    sent = await send(crew, "alice", to)
    assert sorted(sent["recipients"]) == expected
    for agent in ("alice", "bob", "carol", "dave"):
        assert (await bodies(crew, agent) == ["hi"]) == (agent in expected)


async def test_sender_is_never_its_own_recipient(crew: aiohttp.ClientSession) -> None:
    assert (await send(crew, "bob", "cap:review"))["recipients"] == ["carol"]
    assert "bob" not in (await send(crew, "bob", "broadcast"))["recipients"]
    assert (await send(crew, "bob", "bob"))["recipients"] == []
    assert await bodies(crew, "bob") == []


async def test_selector_matching_nobody_still_stores(crew: aiohttp.ClientSession) -> None:
    sent = await send(crew, "ci", "tag:ghosts")
    assert sent["recipients"] == []
    assert (await (await crew.get(f"/api/messages/{sent['id']}")).json())["body"] == "hi"


async def test_unknown_direct_target_is_404_and_stores_nothing(
    crew: aiohttp.ClientSession,
) -> None:
    before = await (await crew.get("/api/messages/cursor")).json()
    for to in ("ghost", "id:ghost"):
        resp = await crew.post("/api/messages", json={"from": "a", "to": to, "body": "x"})
        assert "ghost" in await error_of(resp, 404, "not_found")
    assert await (await crew.get("/api/messages/cursor")).json() == before


async def test_offline_agents_are_included(crew: aiohttp.ClientSession) -> None:
    await crew.patch("/api/agents/bob", json={"status": "offline"})
    sent = await send(crew, "ci", "tag:team")
    assert sent["recipients"] == ["alice", "bob"]
    await register(crew, "bob")
    assert await bodies(crew, "bob") == ["hi"]


async def test_channels(crew: aiohttp.ClientSession) -> None:
    # carol subscribes to ops, dave to deploys, alice and bob to everything
    assert (await send(crew, "ci", "broadcast", channel="ops"))["recipients"] == [
        "alice",
        "bob",
        "carol",
    ]
    assert (await send(crew, "ci", "machine:m2", channel="deploys"))["recipients"] == ["dave"]
    assert (await send(crew, "ci", "machine:m2", channel="random"))["recipients"] == []
    assert (await send(crew, "ci", "machine:m2"))["recipients"] == ["carol", "dave"]
    direct = await send(crew, "ci", "dave", channel="ops")
    assert direct["recipients"] == ["dave"], "direct messages arrive whatever the channel"
    assert await bodies(crew, "dave", channel="ops") == ["hi"]


async def test_threading(crew: aiohttp.ClientSession) -> None:
    root = await send(crew, "alice", "bob", "root")
    assert root["threadId"] == root["id"] and root["replyTo"] is None
    reply = await send(crew, "bob", "alice", "reply", replyTo=root["id"])
    assert reply["replyTo"] == root["id"] and reply["threadId"] == root["id"]
    other = await send(crew, "alice", "bob", "unrelated")
    deeper = await send(crew, "alice", "bob", "deeper", replyTo=reply["id"])
    assert deeper["threadId"] == root["id"]
    for member in (root, reply, deeper):
        resp = await crew.get(f"/api/messages/{member['id']}/thread")
        assert resp.status == 200
        thread = (await resp.json())["messages"]
        assert [m["body"] for m in thread] == ["root", "reply", "deeper"]
    alone = (await (await crew.get(f"/api/messages/{other['id']}/thread")).json())["messages"]
    assert [m["body"] for m in alone] == ["unrelated"]
    assert await bodies(crew, "bob", thread=root["id"]) == ["root", "deeper"]
    await error_of(await crew.get("/api/messages/9999/thread"), 404, "not_found")
    cursor = (await (await crew.get("/api/messages/cursor")).json())["cursor"]
    resp = await crew.post(
        "/api/messages", json={"from": "a", "to": "bob", "body": "x", "replyTo": 9999}
    )
    assert "replyTo" in await error_of(resp, 400, "invalid_request")
    assert (await (await crew.get("/api/messages/cursor")).json())["cursor"] == cursor


async def test_read_state(crew: aiohttp.ClientSession) -> None:
    sent = await send(crew, "alice", "tag:team")
    first = (await inbox(crew, "bob"))["messages"][0]
    assert first["read"] is False and first["readAt"] is None
    resp = await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "bob", "read": True})
    assert resp.status == 200
    marked = await resp.json()
    assert marked["read"] is True and marked["readAt"].endswith("Z")
    assert await bodies(crew, "bob", unread="true") == []
    assert await bodies(crew, "bob") == ["hi"]
    resp = await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "bob", "read": False})
    assert (await resp.json())["read"] is False
    assert await bodies(crew, "bob", unread="true") == ["hi"]
    await error_of(
        await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "carol", "read": True}),
        403,
        "forbidden",
    )
    await error_of(
        await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "bob", "read": "yes"}),
        400,
        "invalid_request",
    )
    await error_of(
        await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "bob"}),
        400,
        "invalid_request",
    )
    await error_of(
        await crew.patch("/api/messages/9999", json={"agent": "bob", "read": True}),
        404,
        "not_found",
    )


async def test_inbox_queries(crew: aiohttp.ClientSession) -> None:
    sent = [
        await send(crew, sender, "bob", f"m{i}", channel=channel)
        for i, (sender, channel) in enumerate(
            [("alice", None), ("carol", "ops"), ("alice", "ops"), ("carol", None)]
        )
    ]
    await send(crew, "alice", "carol", "not for bob")
    ids = [m["id"] for m in sent]
    assert await bodies(crew, "bob") == ["m0", "m1", "m2", "m3"]
    assert await bodies(crew, "bob", since=ids[1]) == ["m2", "m3"], "since is exclusive"
    assert await bodies(crew, "bob", limit=2) == ["m0", "m1"]
    assert await bodies(crew, "bob", order="desc") == ["m3", "m2", "m1", "m0"]
    assert await bodies(crew, "bob", order="desc", limit=1) == ["m3"]
    assert await bodies(crew, "bob", channel="ops") == ["m1", "m2"]
    assert await bodies(crew, "bob", **{"from": "carol"}) == ["m1", "m3"]
    assert await bodies(crew, "bob", since=ids[0], **{"from": "alice"}) == ["m2"]
    everything = await (await crew.get("/api/messages")).json()
    assert len(everything["messages"]) == 5
    await error_of(await crew.get("/api/messages?for=ghost"), 404, "not_found")


async def test_cursor(http: aiohttp.ClientSession) -> None:
    assert await (await http.get("/api/messages/cursor")).json() == {"cursor": 0}
    empty = await (await http.get("/api/messages")).json()
    assert empty == {"messages": [], "cursor": 0}
    await register(http, "bob")
    await register(http, "eve")
    first = await send(http, "x", "bob")
    second = await send(http, "x", "eve")
    assert (await inbox(http, "bob"))["cursor"] == first["id"], "the highest id returned"
    polled = await inbox(http, "bob", since=first["id"])
    assert polled == {"messages": [], "cursor": second["id"]}, "else the current latest id"
    assert (await inbox(http, "bob", order="desc"))["cursor"] == first["id"]
    assert await (await http.get("/api/messages/cursor")).json() == {"cursor": second["id"]}
    await http.delete(f"/api/messages/{second['id']}")
    assert (await (await http.get("/api/messages/cursor")).json())["cursor"] == second["id"]


async def test_long_poll_returns_when_a_message_arrives(crew: aiohttp.ClientSession) -> None:
    cursor = (await (await crew.get("/api/messages/cursor")).json())["cursor"]
    started = time.monotonic()
    poll = asyncio.create_task(inbox(crew, "bob", since=cursor, wait=10))
    await asyncio.sleep(0.2)
    await send(crew, "alice", "carol", "not for bob")
    await asyncio.sleep(0.1)
    assert not poll.done(), "a message for someone else does not end bob's poll"
    sent = await send(crew, "alice", "bob", "for bob")
    result = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 3
    assert [m["body"] for m in result["messages"]] == ["for bob"]
    assert result["cursor"] == sent["id"]


async def test_long_poll_times_out_with_nothing(crew: aiohttp.ClientSession) -> None:
    cursor = (await (await crew.get("/api/messages/cursor")).json())["cursor"]
    started = time.monotonic()
    result = await inbox(crew, "bob", since=cursor, wait=1)
    elapsed = time.monotonic() - started
    assert result == {"messages": [], "cursor": cursor}
    assert 0.9 <= elapsed < 3


async def test_long_poll_returns_at_once_when_something_matches(
    crew: aiohttp.ClientSession,
) -> None:
    await send(crew, "alice", "bob")
    started = time.monotonic()
    assert await bodies(crew, "bob", wait=30) == ["hi"]
    assert time.monotonic() - started < 1


async def test_wait_and_limit_out_of_range(crew: aiohttp.ClientSession) -> None:
    for query in (
        "wait=61",
        "wait=-1",
        "wait=x",
        "limit=0",
        "limit=1001",
        "limit=-5",
        "since=-1",
        "since=abc",
        "order=sideways",
        "unread=maybe",
        "thread=0",
    ):
        resp = await crew.get(f"/api/messages?for=bob&{query}")
        await error_of(resp, 400, "invalid_request")
    assert (await inbox(crew, "bob", limit=1000, wait=0))["messages"] == []


async def test_idempotency_key(crew: aiohttp.ClientSession) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    payload = {"from": "ci", "to": "tag:team", "body": "deploy done"}
    first = await crew.post("/api/messages", json=payload, headers=headers)
    assert first.status == 201
    original = await first.json()
    again = await crew.post("/api/messages", json=payload, headers=headers)
    assert again.status == 200
    replay = await again.json()
    assert replay["id"] == original["id"]
    assert replay["recipients"] == original["recipients"] == ["alice", "bob"]
    assert await bodies(crew, "bob") == ["deploy done"], "delivered once"
    other = await crew.post("/api/messages", json={**payload, "from": "cd"}, headers=headers)
    assert other.status == 201
    assert (await other.json())["id"] != original["id"]
    assert len(await bodies(crew, "bob")) == 2
    resp = await crew.post("/api/messages", json=payload, headers={"Idempotency-Key": "k" * 129})
    await error_of(resp, 400, "invalid_request")


async def test_concurrent_retries_with_one_key_deliver_once(crew: aiohttp.ClientSession) -> None:
    payload = {"from": "ci", "to": "bob", "body": "once"}
    answers = await asyncio.gather(
        *(
            crew.post("/api/messages", json=payload, headers={"Idempotency-Key": "same"})
            for _ in range(10)
        )
    )
    assert sorted(a.status for a in answers) == [200] * 9 + [201]
    assert len({(await a.json())["id"] for a in answers}) == 1
    assert await bodies(crew, "bob") == ["once"]


async def test_claimable_offered_to_agents_that_match_later(crew: aiohttp.ClientSession) -> None:
    claimable = await send(crew, "ci", "cap:deploy", "deploy me", claimable=True)
    plain = await send(crew, "ci", "cap:deploy", "just news")
    assert claimable["recipients"] == [] and plain["recipients"] == []
    await register(crew, "newcomer", capabilities=["deploy"])
    assert await bodies(crew, "newcomer") == ["deploy me"]
    await crew.patch("/api/agents/dave", json={"capabilities": ["deploy"]})
    assert await bodies(crew, "dave") == ["deploy me"]
    resp = await crew.post(f"/api/messages/{claimable['id']}/claim", json={"agent": "dave"})
    assert resp.status == 200
    await register(crew, "latecomer", capabilities=["deploy"])
    assert await bodies(crew, "latecomer") == [], "a claimed message is no longer offered"


async def test_late_offer_respects_channels_and_sender(crew: aiohttp.ClientSession) -> None:
    await send(crew, "ci", "tag:night", "on ops", claimable=True, channel="ops")
    await register(crew, "sub", tags=["night"], channels=["ops"])
    await register(crew, "unsub", tags=["night"], channels=["other"])
    await register(crew, "ci", tags=["night"])
    assert await bodies(crew, "sub") == ["on ops"]
    assert await bodies(crew, "unsub") == []
    assert await bodies(crew, "ci") == []


async def test_message_body_limit(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(max_message_bytes=100)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "bob")
        await send(http, "a", "bob", "é" * 50)  # exactly 100 bytes
        for text in ("x" * 101, "é" * 51, ""):
            resp = await http.post("/api/messages", json={"from": "a", "to": "bob", "body": text})
            assert "body" in await error_of(resp, 400, "invalid_request")
        assert len(await bodies(http, "bob")) == 1


async def test_request_body_limit(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(max_body_bytes=4096)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "bob")
        big = json.dumps({"from": "a", "to": "bob", "body": "x" * 5000})
        resp = await http.post(
            "/api/messages", data=big, headers={"Content-Type": "application/json"}
        )
        await error_of(resp, 413, "payload_too_large")
        assert await bodies(http, "bob") == []


async def test_delete(crew: aiohttp.ClientSession) -> None:
    sent = await send(crew, "alice", "bob")
    latest = (await (await crew.get("/api/stats")).json())["events"]["latestId"]
    resp = await crew.delete(f"/api/messages/{sent['id']}")
    assert resp.status == 204
    await error_of(await crew.get(f"/api/messages/{sent['id']}"), 404, "not_found")
    assert await bodies(crew, "bob") == []
    await error_of(await crew.delete(f"/api/messages/{sent['id']}"), 404, "not_found")
    async with crew.get("/api/events", headers={"Last-Event-ID": str(latest)}) as stream:
        lines: list[str] = []
        while "" not in lines:
            line = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
            if lines or (line.strip() and not line.startswith(":")):
                lines.append(line.rstrip("\n"))
    assert lines[1:] == ["event: message.deleted", f'data: {{"id":{sent["id"]}}}', ""]


async def test_get_unknown_or_bad_message_id(crew: aiohttp.ClientSession) -> None:
    for path in ("9999", "0", "-1", "abc", "1.5", "99999999999999999999999", "%C2%B2"):
        await error_of(await crew.get(f"/api/messages/{path}"), 404, "not_found")


async def test_retention_prunes_old_messages_with_their_read_state(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(retention_days=0)  # every message sent so far is "old"
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "bob")
        old = [await send(http, "ci", "bob", f"old {i}") for i in range(3)]
        await asyncio.sleep(0.01)
        result = await relay.reaper.run_once(force_history=True)
        history = result["history"]
        assert isinstance(history, dict) and history["messages"] == 3
        assert await bodies(http, "bob") == []
        await error_of(await http.get(f"/api/messages/{old[0]['id']}"), 404, "not_found")
        stats = await (await http.get("/api/stats")).json()
        assert stats["messages"]["total"] == 0 and stats["messages"]["unread"] == 0
        fresh = await send(http, "ci", "bob", "fresh")
        assert fresh["id"] > old[-1]["id"], "ids only grow"
        assert await bodies(http, "bob") == ["fresh"]


async def test_stats_and_health(crew: aiohttp.ClientSession) -> None:
    await crew.patch("/api/agents/dave", json={"status": "offline"})
    await send(crew, "alice", "tag:team")
    sent = await send(crew, "alice", "bob")
    await crew.patch(f"/api/messages/{sent['id']}", json={"agent": "bob", "read": True})
    async with crew.get("/api/events") as stream:
        await stream.content.readline()
        stats = await (await crew.get("/api/stats")).json()
    assert isinstance(stats["version"], str) and stats["uptimeSeconds"] >= 0
    assert {k: stats["agents"][k] for k in ("total", "online", "offline")} == {
        "total": 4,
        "online": 3,
        "offline": 1,
    }
    assert {k: stats["messages"][k] for k in ("total", "unread")} == {"total": 2, "unread": 1}
    assert isinstance(stats["tasks"], dict) and isinstance(stats["pairs"], dict)
    assert stats["sse"]["connections"] == 1
    health = await crew.get("/api/health")
    assert health.status == 200
    payload = await health.json()
    assert (payload["status"], payload["version"]) == ("ok", stats["version"])


async def test_default_limit_is_100(crew: aiohttp.ClientSession) -> None:
    sent = await asyncio.gather(*(send(crew, "ci", "bob", f"m{i}") for i in range(101)))
    page = await inbox(crew, "bob")
    assert len(page["messages"]) == 100
    ids = sorted(m["id"] for m in sent)
    assert page["cursor"] == ids[99]
    rest = await inbox(crew, "bob", since=page["cursor"])
    assert [m["id"] for m in rest["messages"]] == ids[100:]

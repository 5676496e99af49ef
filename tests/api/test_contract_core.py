"""The contract's sections 1-5 and 8, line by line, against a real relay: an audit's checklist.

Each test names the contract line it holds the daemon to; most run in one short relay.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AGENT_FIELDS = {
    "id", "label", "machine", "project", "provider", "tags", "capabilities", "channels",
    "status", "approval", "meta", "version", "registeredAt", "lastSeenAt",
}
MESSAGE_FIELDS = {
    "id", "from", "to", "subject", "body", "channel", "replyTo", "threadId", "claimable",
    "claimedBy", "claimedAt", "createdAt", "meta",
}
TOKEN = "contract-admin-token"


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, json=body, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def register(http: aiohttp.ClientSession, agent_id: str, **fields: Any) -> dict[str, Any]:
    status, agent = await call(http, "POST", "/api/agents", {"id": agent_id, **fields})
    assert status in (200, 201), agent
    return dict(agent)


async def go_offline(http: aiohttp.ClientSession, agent_id: str) -> None:
    status, agent = await call(http, "POST", f"/api/agents/{agent_id}/heartbeat",
                               {"status": "offline"})
    assert status == 200 and agent["status"] == "offline"


async def send(
    http: aiohttp.ClientSession,
    sender: str = "cli",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, Any]:
    body = {"from": sender, "body": "hi", **fields}
    return await call(http, "POST", "/api/messages", body, headers=headers)


def assert_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    assert body["code"] == code and isinstance(body["error"], str) and body["error"], body


# ------------------------------------------------------------------ 1. conventions


async def test_agent_and_message_objects_carry_every_field_in_camel_case(
    http: aiohttp.ClientSession,
) -> None:
    agent = await register(http, "c-a")
    assert set(agent) >= AGENT_FIELDS
    assert agent["capabilities"] == ["chat"] and agent["channels"] == ["*"]
    assert agent["status"] == "online" and agent["approval"] == "open" and agent["meta"] == {}
    assert ISO_MS_Z.match(agent["registeredAt"]) and ISO_MS_Z.match(agent["lastSeenAt"])
    status, message = await send(http, to="c-a")
    assert status == 201 and set(message) >= MESSAGE_FIELDS | {"recipients"}
    assert ISO_MS_Z.match(message["createdAt"]) and message["claimedAt"] is None
    _, inbox = await call(http, "GET", "/api/messages?for=c-a")
    listed = inbox["messages"][0]
    assert set(listed) >= MESSAGE_FIELDS | {"read", "readAt"}
    assert listed["read"] is False and listed["readAt"] is None
    _, marked = await call(http, "PATCH", f"/api/messages/{message['id']}",
                           {"agent": "c-a", "read": True})
    assert marked["read"] is True and ISO_MS_Z.match(marked["readAt"])


async def test_errors_have_stable_codes(http: aiohttp.ClientSession) -> None:
    assert_error(*await call(http, "GET", "/api/nope"), 404, "not_found")
    assert_error(*await call(http, "PUT", "/api/agents"), 405, "method_not_allowed")
    for raw in (b"not json", b"[1]", b"42"):
        assert_error(*await call(http, "POST", "/api/agents", data=raw,
                                 headers={"Content-Type": "application/json"}), 400,
                     "invalid_json")
    status, body = await call(http, "POST", "/api/agents", {"label": "no id"})
    assert_error(status, body, 400, "invalid_request")
    assert "id" in body["error"]
    for query in ("limit=0", "limit=1001", "wait=61", "since=-1", "limit=x"):
        assert_error(*await call(http, "GET", f"/api/messages?{query}"), 400, "invalid_request")
    for path in ("/api/agents?", "/api/agents/find?capability=chat&", "/api/tasks?",
                 "/api/pairs?"):
        for limit in (0, 1001):
            url = f"{path}limit={limit}"
            assert_error(*await call(http, "GET", url), 400, "invalid_request")


async def test_agent_lists_take_a_limit(http: aiohttp.ClientSession) -> None:
    """Regression: GET /api/agents ignored ?limit=, so limit=0 was silently answered."""
    for n in range(3):
        await register(http, f"lim-{n}")
    _, two = await call(http, "GET", "/api/agents?limit=2")
    assert [a["id"] for a in two["agents"]] == ["lim-0", "lim-1"]
    _, everyone = await call(http, "GET", "/api/agents")
    assert len(everyone["agents"]) == 3
    _, found = await call(http, "GET", "/api/agents/find?capability=chat&limit=1")
    assert [a["id"] for a in found["agents"]] == ["lim-0"]


async def test_ids_only_grow(http: aiohttp.ClientSession) -> None:
    await register(http, "c-grow")
    ids = [(await send(http, to="c-grow"))[1]["id"] for _ in range(3)]
    await call(http, "DELETE", f"/api/messages/{ids[-1]}")
    _, fourth = await send(http, to="c-grow")
    assert ids == sorted(ids) and ids[0] >= 1 and fourth["id"] > ids[-1]


# ------------------------------------------------------------------ 2. authentication


async def test_admin_token_by_either_header_and_401_with_bearer_challenge(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory(token=TOKEN)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Agent-Relay-Token": "x"}):
            async with http.get("/api/agents", headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await response.json())["code"] == "unauthorized"
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Agent-Relay-Token": TOKEN}):
            status, body = await call(http, "GET", "/api/health", headers=headers)
            assert status == 200 and body["status"] == "ok"


async def test_each_endpoint_needs_its_scope(relay_factory: Callable[..., Any]) -> None:
    nothing = Integration(name="nothing", token="no-scopes-token", scopes=frozenset())
    relay: Relay = await relay_factory(token=TOKEN, integrations=(nothing,))
    needs = [
        ("POST", "/api/agents"), ("GET", "/api/agents"), ("GET", "/api/agents/find"),
        ("GET", "/api/agents/x"), ("PATCH", "/api/agents/x"), ("DELETE", "/api/agents/x"),
        ("POST", "/api/agents/x/heartbeat"), ("PATCH", "/api/agents/x/label"),
        ("POST", "/api/messages"), ("GET", "/api/messages"), ("GET", "/api/messages/cursor"),
        ("GET", "/api/messages/1"), ("PATCH", "/api/messages/1"),
        ("DELETE", "/api/messages/1"), ("GET", "/api/messages/1/thread"),
        ("POST", "/api/messages/1/claim"), ("GET", "/api/events"), ("GET", "/api/stats"),
        ("GET", "/api/health"),
    ]
    headers = {"Authorization": "Bearer no-scopes-token"}
    async with aiohttp.ClientSession(base_url=relay.url, headers=headers) as http:
        for method, path in needs:
            status, body = await call(http, method, path)
            assert (status, body["code"]) == (403, "forbidden"), (method, path, body)


async def test_cors_is_same_origin_unless_listed(relay_factory: Callable[..., Any]) -> None:
    closed: Relay = await relay_factory()
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession(base_url=closed.url) as http:
        async with http.options("/api/messages", headers=preflight) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.get("/api/agents", headers={"Origin": "http://ui.example"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
    await closed.stop()
    opened: Relay = await relay_factory(cors_origins=("http://ui.example",))
    async with (
        aiohttp.ClientSession(base_url=opened.url) as http,
        http.options("/api/messages", headers=preflight) as response,
    ):
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://ui.example"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


# ------------------------------------------------------------------ 3. agents


async def test_register_is_201_then_200_marks_online_and_keeps_unread(
    http: aiohttp.ClientSession,
) -> None:
    status, _ = await call(http, "POST", "/api/agents", {"id": "c-reg", "tags": ["t"]})
    assert status == 201
    await go_offline(http, "c-reg")
    await send(http, to="c-reg")
    status, again = await call(http, "POST", "/api/agents", {"id": "c-reg"})
    assert status == 200 and again["status"] == "online" and again["tags"] == ["t"]
    _, inbox = await call(http, "GET", "/api/messages?for=c-reg&unread=true")
    assert len(inbox["messages"]) == 1


async def test_agent_filters_find_heartbeat_label_patch_delete(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "c-r1", tags=["rev"], machine="m1", capabilities=["review"])
    await register(http, "c-r2", capabilities=["review"])
    await go_offline(http, "c-r2")
    await register(http, "c-r3", machine="m2")
    _, found = await call(http, "GET", "/api/agents/find?capability=review")
    assert [a["id"] for a in found["agents"]] == ["c-r1"]
    for query, ids in (("tag=rev", ["c-r1"]), ("machine=m2", ["c-r3"]),
                       ("capability=review", ["c-r1", "c-r2"]), ("status=offline", ["c-r2"])):
        _, listed = await call(http, "GET", f"/api/agents?{query}")
        assert sorted(a["id"] for a in listed["agents"]) == ids, query
    assert_error(*await call(http, "POST", "/api/agents/c-ghost/heartbeat"), 404, "not_found")
    assert_error(*await call(http, "GET", "/api/agents/c-ghost"), 404, "not_found")
    status, beat = await call(http, "POST", "/api/agents/c-r3/heartbeat", {"status": "busy"})
    assert status == 200 and beat["status"] == "busy"
    status, labelled = await call(http, "PATCH", "/api/agents/c-r3/label", {"label": "L3"})
    assert status == 200 and labelled["label"] == "L3"
    changes = {"tags": ["a"], "capabilities": ["x"], "channels": ["ops"], "status": "idle",
               "approval": "read-only", "meta": {"k": 1}, "label": "L4"}
    status, patched = await call(http, "PATCH", "/api/agents/c-r3", changes)
    assert status == 200 and {k: patched[k] for k in changes} == changes
    async with http.delete("/api/agents/c-r3") as response:
        assert response.status == 204 and await response.read() == b""
    assert_error(*await call(http, "GET", "/api/agents/c-r3"), 404, "not_found")


# ------------------------------------------------------------------ 4. messages


async def test_every_target_form(http: aiohttp.ClientSession) -> None:
    await register(http, "t-1", tags=["red"], label="one", machine="box", capabilities=["go"])
    await register(http, "t-2", tags=["red"], machine="box")
    await go_offline(http, "t-2")
    await register(http, "t-3")
    expected = {
        "t-1": ["t-1"], "id:t-1": ["t-1"], "tag:red": ["t-1", "t-2"], "cap:go": ["t-1"],
        "label:one": ["t-1"], "machine:box": ["t-1", "t-2"], "broadcast": ["t-1", "t-2", "t-3"],
        "tag:nobody": [],
    }
    for to, recipients in expected.items():
        status, message = await send(http, to=to)
        assert status == 201 and sorted(message["recipients"]) == recipients, to
    assert_error(*await send(http, to="t-404"), 404, "not_found")
    assert_error(*await send(http, to="id:t-404"), 404, "not_found")
    _, from_member = await send(http, sender="t-1", to="tag:red")
    assert from_member["recipients"] == ["t-2"]  # never its own recipient
    status, to_itself = await send(http, sender="t-3", to="t-3")
    assert status == 201 and to_itself["recipients"] == []  # docs once said "delivered"


async def test_channels_filter_selectors_but_not_direct_messages(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "ch-all")
    await register(http, "ch-ops", channels=["ops"])
    await register(http, "ch-dev", channels=["dev"])
    _, on_ops = await send(http, to="broadcast", channel="ops")
    assert on_ops["recipients"] == ["ch-all", "ch-ops"]
    _, plain = await send(http, to="broadcast")
    assert plain["recipients"] == ["ch-all", "ch-dev", "ch-ops"]
    _, direct = await send(http, to="ch-dev", channel="ops")
    assert direct["recipients"] == ["ch-dev"]


async def test_threading_and_thread_listing(http: aiohttp.ClientSession) -> None:
    await register(http, "th-a")
    await register(http, "th-b")
    _, root = await send(http, sender="th-a", to="th-b")
    _, reply = await send(http, sender="th-b", to="th-a", replyTo=root["id"])
    _, deeper = await send(http, sender="th-a", to="th-b", replyTo=reply["id"])
    assert root["threadId"] == root["id"] and root["replyTo"] is None
    assert (reply["replyTo"], reply["threadId"]) == (root["id"], root["id"])
    assert deeper["threadId"] == root["id"]
    _, thread = await call(http, "GET", f"/api/messages/{root['id']}/thread")
    assert [m["id"] for m in thread["messages"]] == [root["id"], reply["id"], deeper["id"]]
    assert_error(*await send(http, to="th-a", replyTo=deeper["id"] + 100), 400,
                 "invalid_request")


async def test_inbox_since_order_limit_and_cursor(http: aiohttp.ClientSession) -> None:
    await register(http, "in-a")
    await register(http, "in-b")
    _, empty = await call(http, "GET", "/api/messages/cursor")
    assert empty == {"cursor": 0}
    ids = [(await send(http, to="in-a"))[1]["id"] for _ in range(4)]
    other = (await send(http, to="in-b"))[1]["id"]
    _, page = await call(http, "GET", f"/api/messages?for=in-a&since={ids[0]}&limit=2")
    assert [m["id"] for m in page["messages"]] == ids[1:3] and page["cursor"] == ids[2]
    _, newest = await call(http, "GET", "/api/messages?for=in-a&order=desc&limit=2")
    assert [m["id"] for m in newest["messages"]] == [ids[3], ids[2]]
    assert newest["cursor"] == ids[3]
    _, caught_up = await call(http, "GET", f"/api/messages?for=in-a&since={ids[3]}")
    assert caught_up == {"messages": [], "cursor": other}  # nothing: the latest id overall
    _, cursor = await call(http, "GET", "/api/messages/cursor")
    assert cursor == {"cursor": other}


async def test_long_poll_answers_on_arrival_or_after_wait(http: aiohttp.ClientSession) -> None:
    await register(http, "lp-a")
    _, start = await call(http, "GET", "/api/messages/cursor")
    loop = asyncio.get_running_loop()
    began = loop.time()
    _, idle = await call(http, "GET", f"/api/messages?for=lp-a&since={start['cursor']}&wait=1")
    assert idle["messages"] == [] and loop.time() - began >= 0.9
    poll = asyncio.ensure_future(
        call(http, "GET", f"/api/messages?for=lp-a&since={start['cursor']}&wait=30")
    )
    await asyncio.sleep(0.2)
    _, sent = await send(http, to="lp-a")
    _, woke = await asyncio.wait_for(poll, 5)
    assert [m["id"] for m in woke["messages"]] == [sent["id"]] and woke["cursor"] == sent["id"]


async def test_claim_rules(http: aiohttp.ClientSession) -> None:
    for agent_id in ("cl-a", "cl-b"):
        await register(http, agent_id, tags=["crew"])
    await register(http, "cl-out")
    _, job = await send(http, to="tag:crew", claimable=True)
    path = f"/api/messages/{job['id']}/claim"
    assert_error(*await call(http, "POST", path, {"agent": "cl-out"}), 403, "forbidden")
    status, won = await call(http, "POST", path, {"agent": "cl-a"})
    assert status == 200 and won["claimedBy"] == "cl-a" and ISO_MS_Z.match(won["claimedAt"])
    status, lost = await call(http, "POST", path, {"agent": "cl-b"})
    assert_error(status, lost, 409, "already_claimed")
    assert lost["claimedBy"] == "cl-a"
    status, again = await call(http, "POST", path, {"agent": "cl-a"})
    assert status == 200 and again["claimedBy"] == "cl-a"
    _, plain = await send(http, to="cl-a")
    assert_error(*await call(http, "POST", f"/api/messages/{plain['id']}/claim",
                             {"agent": "cl-a"}), 409, "invalid_state")


async def test_late_matching_agent_is_offered_an_unclaimed_claimable_message(
    http: aiohttp.ClientSession,
) -> None:
    _, job = await send(http, to="tag:later", claimable=True)
    assert job["recipients"] == []
    await register(http, "late-x", tags=["later"])
    _, inbox = await call(http, "GET", "/api/messages?for=late-x")
    assert [m["id"] for m in inbox["messages"]] == [job["id"]]
    status, won = await call(http, "POST", f"/api/messages/{job['id']}/claim",
                             {"agent": "late-x"})
    assert status == 200 and won["claimedBy"] == "late-x"


async def test_delete_message_is_204_then_404(http: aiohttp.ClientSession) -> None:
    await register(http, "del-a")
    _, message = await send(http, to="del-a")
    async with http.delete(f"/api/messages/{message['id']}") as response:
        assert response.status == 204
    assert_error(*await call(http, "GET", f"/api/messages/{message['id']}"), 404, "not_found")
    assert_error(*await call(http, "DELETE", f"/api/messages/{message['id']}"), 404,
                 "not_found")


async def test_idempotency_key_per_sender_within_24_hours(relay: Relay) -> None:
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "idem-a")
        key = {"Idempotency-Key": "retry-1"}
        status, first = await send(http, to="idem-a", headers=key)
        assert status == 201
        status, replay = await send(http, to="idem-a", headers=key)
        assert status == 200 and replay["id"] == first["id"]
        assert replay["recipients"] == ["idem-a"]
        status, other_sender = await send(http, sender="cli-2", to="idem-a", headers=key)
        assert status == 201 and other_sender["id"] != first["id"]
        _, inbox = await call(http, "GET", "/api/messages?for=idem-a")
        assert len(inbox["messages"]) == 2  # the replay delivered nothing
        await relay.ctx.store.run_write(  # age the key past the window (either backend)
            lambda tx: tx.run("UPDATE idempotency_keys SET created_at = created_at - ?",
                              (25 * 3600 * 1000,))
        )
        status, fresh = await send(http, to="idem-a", headers=key)
        assert status == 201 and fresh["id"] > other_sender["id"]


async def test_body_over_the_default_limit_is_413(http: aiohttp.ClientSession) -> None:
    huge = json.dumps({"from": "x", "to": "broadcast", "body": "a" * (1024 * 1024 + 1)})
    status, body = await call(http, "POST", "/api/messages", data=huge,
                              headers={"Content-Type": "application/json"})
    assert_error(status, body, 413, "payload_too_large")
    status, _ = await send(http, to="broadcast", body="a" * (64 * 1024))
    assert status == 201
    assert_error(*await send(http, to="broadcast", body="a" * (64 * 1024 + 1)), 400,
                 "invalid_request")


# ------------------------------------------------------------------ 8. stats and health


async def test_stats_and_health_shapes(http: aiohttp.ClientSession) -> None:
    await register(http, "st-a")
    await register(http, "st-b")
    await go_offline(http, "st-b")
    await send(http, to="st-a")
    _, stats = await call(http, "GET", "/api/stats")
    assert isinstance(stats["version"], str) and stats["uptimeSeconds"] >= 0
    assert stats["agents"] == {**stats["agents"], "total": 2, "online": 1, "offline": 1}
    assert stats["messages"]["total"] == 1 and stats["messages"]["unread"] == 1
    assert isinstance(stats["tasks"], dict) and isinstance(stats["pairs"], dict)
    assert stats["sse"]["connections"] == 0
    status, health = await call(http, "GET", "/api/health")
    assert status == 200 and health["status"] == "ok" and health["version"] == stats["version"]


# ------------------------------------------------------------------ 5. server-sent events


class Frames:
    """Raw SSE frames of one response: each event's fields, and the comment lines."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def event(self, timeout: float = 5.0) -> dict[str, str]:
        fields: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), timeout)).decode()
            line = line.rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif fields:
                return fields

    async def events(self, count: int) -> list[dict[str, str]]:
        return [await self.event() for _ in range(count)]


async def test_sse_event_types_and_data_shapes(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        frames = Frames(response)
        await register(http, "ev-a", tags=["ev"])
        _, job = await send(http, to="tag:ev", claimable=True)
        await call(http, "POST", f"/api/messages/{job['id']}/claim", {"agent": "ev-a"})
        await call(http, "DELETE", f"/api/messages/{job['id']}")
        await call(http, "DELETE", "/api/agents/ev-a")
        events = await frames.events(5)
    assert all({"id", "event", "data"} <= set(e) for e in events)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids))
    data = [json.loads(e["data"]) for e in events]
    assert [e["event"] for e in events] == [
        "agent.status", "message.new", "message.claimed", "message.deleted", "agent.removed",
    ]
    assert set(data[0]) >= AGENT_FIELDS and set(data[1]) >= MESSAGE_FIELDS
    assert data[2] == {"id": job["id"], "claimedBy": "ev-a"}
    assert data[3] == {"id": job["id"]} and data[4] == {"id": "ev-a"}


async def test_sse_for_filters_and_last_event_id_replays_in_order(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "f-a")
    await register(http, "f-b")
    async with http.get("/api/events?for=f-a") as response:
        frames = Frames(response)
        _, to_b = await send(http, to="f-b")
        _, to_a = await send(http, to="f-a")
        first = json.loads((await frames.event())["data"])
        assert first["id"] == to_a["id"]  # f-b's message is not f-a's to see
    _, mid = await send(http, to="f-a")
    _, last = await send(http, to="f-a")
    since = 0
    async with http.get("/api/events?for=f-a", headers={"Last-Event-ID": str(since)}) as response:
        replayed = await Frames(response).events(4)
    kinds = [(e["event"], json.loads(e["data"])["id"]) for e in replayed]
    assert kinds == [("agent.status", "f-a"), ("agent.status", "f-b"),
                     ("message.new", to_a["id"]), ("message.new", mid["id"])]
    resume = int(replayed[2]["id"])
    async with http.get("/api/events", headers={"Last-Event-ID": str(resume)}) as response:
        frames = Frames(response)
        tail = await frames.events(2)
        _, live = await send(http, to="f-b")
        after = await frames.event()
    assert [json.loads(e["data"])["id"] for e in tail] == [mid["id"], last["id"]]
    assert json.loads(after["data"])["id"] == live["id"] and to_b["id"] < live["id"]


async def test_sse_sees_what_a_client_does_right_after_connecting(
    http: aiohttp.ClientSession,
) -> None:
    """Regression: the stream's start point was read after its headers went out, so a send
    committed in between was skipped as "already sent" and never streamed."""
    await register(http, "quick")
    for attempt in range(20):
        async with http.get("/api/events?for=quick") as response:
            _, sent = await send(http, to="quick", body=f"n{attempt}")
            got = json.loads((await Frames(response).event(timeout=3))["data"])
            assert got["id"] == sent["id"]


async def test_sse_comment_at_least_every_keepalive_even_under_traffic(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory(sse_keepalive_seconds=0.2)
    async with (
        aiohttp.ClientSession(base_url=relay.url) as http,
        http.get("/api/events") as response,
    ):
        loop = asyncio.get_running_loop()

        async def traffic() -> None:
            for n in range(12):
                await register(http, f"busy-{n}")
                await asyncio.sleep(0.05)

        sender = asyncio.ensure_future(traffic())
        lines: list[str] = []
        end = loop.time() + 0.55
        while loop.time() < end:
            raw = await asyncio.wait_for(response.content.readline(), 1)
            lines.append(raw.decode().rstrip("\n"))
        await sender
    assert lines[0] == ": connected"
    assert any(line.startswith("event: agent.status") for line in lines)
    assert lines.count(": keep-alive") >= 2


@pytest.mark.sqlite_only  # on PostgreSQL: tests/e2e/test_replicas.py restarts the server
async def test_health_is_503_when_storage_is_not_usable(relay: Relay) -> None:
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        relay.settings.db_path.unlink()  # the database deleted under the running relay
        status, body = await call(http, "GET", "/api/health")
        assert_error(status, body, 503, "unavailable")
        assert body["status"] == "unavailable" and isinstance(body["version"], str)


async def test_integration_allow_lists_bind_plain_sends_too(
    relay_factory: Callable[..., Any],
) -> None:
    """Regression: an integration limited to `tag:ops` could broadcast through POST
    /api/messages, around the allow-lists the event ingress enforces."""
    limited = Integration(name="ci", token="ci-token-1234", scopes=frozenset({"messages:write"}),
                          targets=("tag:ops", "tag:ops-*"), channels=("alerts",))
    relay: Relay = await relay_factory(token=TOKEN, integrations=(limited,))
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=relay.url, headers=admin) as http:
        await register(http, "ops-1", tags=["ops"])
    ci = {"Authorization": "Bearer ci-token-1234"}
    async with aiohttp.ClientSession(base_url=relay.url, headers=ci) as http:
        refused: list[dict[str, Any]] = [
            {"to": "broadcast"}, {"to": "ops-1"}, {"to": "tag:ops", "channel": "random"},
        ]
        for fields in refused:
            assert_error(*await send(http, sender="ci", **fields), 403, "forbidden")
        allowed: list[dict[str, Any]] = [
            {"to": "tag:ops"}, {"to": "tag:ops-eu"}, {"to": "tag:ops", "channel": "alerts"},
        ]
        for fields in allowed:
            status, _ = await send(http, sender="ci", **fields)
            assert status == 201, fields
    async with aiohttp.ClientSession(base_url=relay.url, headers=admin) as http:
        _, inbox = await call(http, "GET", "/api/messages?for=ops-1")
        assert len(inbox["messages"]) == 2  # the refused sends stored nothing

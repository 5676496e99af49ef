"""Concurrent sends share group commits and the set-based write path; each still gets its own
answer, errors stay with the request that caused them, and the event log stays in order."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from relayd.daemon.relay import Relay


async def _send(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post("/api/messages", json=body) as resp:
        return resp.status, await resp.json()


async def test_mixed_concurrent_sends_each_get_their_own_outcome(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    for agent, tags in (("ann", ["crew"]), ("bob", ["crew"]), ("cy", [])):
        await http.post("/api/agents", json={"id": agent, "tags": tags})
    status, root = await _send(http, {"from": "ann", "to": "bob", "body": "root"})
    assert status == 201
    kinds = {
        "direct": ({"from": "ann", "to": "bob", "body": "d"}, 201, ["bob"]),
        "ghost": ({"from": "ann", "to": "ghost", "body": "g"}, 404, None),
        "crew": ({"from": "ann", "to": "tag:crew", "body": "t"}, 201, ["bob"]),
        "all": ({"from": "cy", "to": "broadcast", "body": "b"}, 201, ["ann", "bob"]),
        "reply": ({"from": "bob", "to": "ann", "body": "r", "replyTo": root["id"]}, 201, ["ann"]),
        "orphan": ({"from": "bob", "to": "ann", "body": "o", "replyTo": 10**9}, 400, None),
        "self": ({"from": "cy", "to": "cy", "body": "s"}, 201, []),
    }
    plan = [name for name in kinds for _ in range(10)]
    commits_before = relay.ctx.store.commits
    answers = await asyncio.gather(*[_send(http, kinds[name][0]) for name in plan])
    assert relay.ctx.store.commits - commits_before < len(plan)  # really grouped

    created = []
    for name, (status, body) in zip(plan, answers, strict=True):
        _, expected_status, expected_recipients = kinds[name]
        assert status == expected_status, (name, body)
        if status == 201:
            assert body["recipients"] == expected_recipients, name
            assert body["body"] == kinds[name][0]["body"]
            created.append(body)
        else:
            assert body["code"] in ("not_found", "invalid_request")
    ids = [m["id"] for m in created]
    assert len(set(ids)) == len(ids)
    for message in created:
        async with http.get(f"/api/messages/{message['id']}") as resp:
            stored = await resp.json()
        assert stored["body"] == message["body"]
        expected_thread = root["id"] if message["replyTo"] else message["id"]
        assert stored["threadId"] == expected_thread

    async with http.get("/api/messages", params={"for": "bob", "limit": 1000}) as resp:
        inbox = await resp.json()
    expected_for_bob = {m["id"] for m in created if "bob" in m["recipients"]} | {root["id"]}
    assert {m["id"] for m in inbox["messages"]} == expected_for_bob

    events = await relay.ctx.store.events_after(0, 10_000)
    event_ids = [e.id for e in events]
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == len(event_ids)
    announced = [e.data["id"] for e in events if e.type == "message.new"]
    assert sorted(announced) == sorted([root["id"], *ids])

"""/api/agents against a real relay: registration, listing, heartbeats, updates, removal."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest

from tests.helpers import register

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def error_of(resp: aiohttp.ClientResponse, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    payload = await resp.json()
    assert payload["code"] == code
    assert isinstance(payload["error"], str) and payload["error"]
    return str(payload["error"])


async def ids(resp: aiohttp.ClientResponse) -> list[str]:
    assert resp.status == 200, await resp.text()
    return sorted(a["id"] for a in (await resp.json())["agents"])


async def test_register_new_is_201_with_the_full_agent(http: aiohttp.ClientSession) -> None:
    resp = await http.post(
        "/api/agents",
        json={
            "id": "host-proj-1a2b",
            "label": "Reviewer",
            "machine": "m1",
            "project": "p",
            "provider": "claude",
            "tags": ["team"],
            "meta": {"k": [1, 2]},
            "version": "1.0",
        },
    )
    assert resp.status == 201
    agent = await resp.json()
    assert agent["id"] == "host-proj-1a2b"
    assert agent["label"] == "Reviewer"
    assert agent["machine"] == "m1" and agent["project"] == "p" and agent["provider"] == "claude"
    assert agent["tags"] == ["team"]
    assert agent["capabilities"] == ["chat"]
    assert agent["channels"] == ["*"]
    assert agent["status"] == "online"
    assert agent["approval"] == "open"
    assert agent["meta"] == {"k": [1, 2]}
    assert agent["version"] == "1.0"
    assert ISO_Z.match(agent["registeredAt"]) and ISO_Z.match(agent["lastSeenAt"])


async def test_reregister_is_200_marks_online_and_keeps_unread(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "bob", tags=["a"])
    resp = await http.post("/api/messages", json={"from": "ci", "to": "bob", "body": "hello"})
    assert resp.status == 201
    resp = await http.patch("/api/agents/bob", json={"status": "offline"})
    assert (await resp.json())["status"] == "offline"

    resp = await http.post("/api/agents", json={"id": "bob", "label": "Bob"})
    assert resp.status == 200
    agent = await resp.json()
    assert agent["status"] == "online"
    assert agent["label"] == "Bob"
    assert agent["tags"] == ["a"], "fields left out of a re-registration are kept"
    inbox = await (await http.get("/api/messages", params={"for": "bob", "unread": "true"})).json()
    assert [m["body"] for m in inbox["messages"]] == ["hello"]


async def test_list_filters(http: aiohttp.ClientSession) -> None:
    await register(http, "a1", tags=["red"], machine="m1", capabilities=["review", "chat"])
    await register(http, "a2", tags=["blue"], machine="m2", status="busy")
    await register(http, "a3", tags=["red", "blue"], machine="m1", capabilities=["deploy"])
    assert await ids(await http.get("/api/agents")) == ["a1", "a2", "a3"]
    assert await ids(await http.get("/api/agents?tag=red")) == ["a1", "a3"]
    assert await ids(await http.get("/api/agents?machine=m1")) == ["a1", "a3"]
    assert await ids(await http.get("/api/agents?status=busy")) == ["a2"]
    assert await ids(await http.get("/api/agents?capability=chat")) == ["a1", "a2"]
    assert await ids(await http.get("/api/agents?tag=blue&machine=m1")) == ["a3"]
    assert await ids(await http.get("/api/agents?tag=none")) == []
    await error_of(await http.get("/api/agents?status=asleep"), 400, "invalid_request")


async def test_find_by_capability_skips_offline(http: aiohttp.ClientSession) -> None:
    await register(http, "r1", capabilities=["review"])
    await register(http, "r2", capabilities=["review"])
    await register(http, "c1")
    await http.patch("/api/agents/r2", json={"status": "offline"})
    assert await ids(await http.get("/api/agents/find?capability=review")) == ["r1"]
    assert await ids(await http.get("/api/agents/find?capability=nothing")) == []
    await error_of(await http.get("/api/agents/find"), 400, "invalid_request")


async def test_get_and_404(http: aiohttp.ClientSession) -> None:
    await register(http, "x.y@z:1-2_3")
    resp = await http.get("/api/agents/x.y@z:1-2_3")
    assert resp.status == 200
    assert (await resp.json())["id"] == "x.y@z:1-2_3"
    message = await error_of(await http.get("/api/agents/ghost"), 404, "not_found")
    assert "ghost" in message


async def test_heartbeat(http: aiohttp.ClientSession) -> None:
    first = await register(http, "hb")
    await asyncio.sleep(0.01)
    resp = await http.post("/api/agents/hb/heartbeat")
    assert resp.status == 200
    beat = await resp.json()
    assert beat["lastSeenAt"] > first["lastSeenAt"]
    assert beat["status"] == "online"
    resp = await http.post("/api/agents/hb/heartbeat", json={"status": "busy"})
    assert (await resp.json())["status"] == "busy"
    resp = await http.post("/api/agents/hb/heartbeat", json={})
    assert (await resp.json())["status"] == "busy", "a heartbeat without status keeps it"
    await error_of(await http.post("/api/agents/ghost/heartbeat"), 404, "not_found")
    await error_of(
        await http.post("/api/agents/hb/heartbeat", json={"status": "dancing"}),
        400,
        "invalid_request",
    )
    await error_of(
        await http.post("/api/agents/hb/heartbeat", json={"status": 3}), 400, "invalid_request"
    )


async def test_heartbeat_brings_an_offline_agent_back(http: aiohttp.ClientSession) -> None:
    await register(http, "sleepy")
    await http.patch("/api/agents/sleepy", json={"status": "offline"})
    resp = await http.post("/api/agents/sleepy/heartbeat")
    assert (await resp.json())["status"] == "online"


async def test_patch_label(http: aiohttp.ClientSession) -> None:
    await register(http, "lab")
    resp = await http.patch("/api/agents/lab/label", json={"label": "Frontend"})
    assert resp.status == 200
    assert (await resp.json())["label"] == "Frontend"
    assert (await (await http.get("/api/agents/lab")).json())["label"] == "Frontend"
    await error_of(await http.patch("/api/agents/lab/label", json={}), 400, "invalid_request")
    await error_of(
        await http.patch("/api/agents/lab/label", json={"label": 5}), 400, "invalid_request"
    )
    await error_of(
        await http.patch("/api/agents/ghost/label", json={"label": "x"}), 404, "not_found"
    )


async def test_patch_fields(http: aiohttp.ClientSession) -> None:
    await register(http, "pf", tags=["old"])
    changes = {
        "label": "L",
        "tags": ["t1", "t2"],
        "capabilities": ["review"],
        "channels": ["ops"],
        "status": "idle",
        "approval": "read-only",
        "meta": {"a": 1},
    }
    resp = await http.patch("/api/agents/pf", json=changes)
    assert resp.status == 200
    agent = await resp.json()
    for name, value in changes.items():
        assert agent[name] == value
    stored = await (await http.get("/api/agents/pf")).json()
    for name, value in changes.items():
        assert stored[name] == value
    resp = await http.patch("/api/agents/pf", json={"approval": "guarded"})
    agent = await resp.json()
    assert agent["approval"] == "guarded" and agent["tags"] == ["t1", "t2"]
    await error_of(await http.patch("/api/agents/pf", json={}), 400, "invalid_request")
    await error_of(await http.patch("/api/agents/ghost", json={"label": "x"}), 404, "not_found")


async def test_delete_is_204_and_emits_agent_removed(http: aiohttp.ClientSession) -> None:
    await register(http, "gone")
    before = (await (await http.get("/api/stats")).json())["events"]["latestId"]
    async with http.get("/api/events", headers={"Last-Event-ID": str(before)}) as stream:
        resp = await http.delete("/api/agents/gone")
        assert resp.status == 204
        assert await resp.read() == b""
        event = await _next_event(stream)
    assert event == ("agent.removed", {"id": "gone"})
    await error_of(await http.get("/api/agents/gone"), 404, "not_found")
    await error_of(await http.delete("/api/agents/gone"), 404, "not_found")


async def _next_event(stream: aiohttp.ClientResponse) -> tuple[str, Any]:
    kind, data = "", None
    while True:
        line = (await asyncio.wait_for(stream.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif not line and kind:
            return kind, data


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": ""},
        {"id": "has space"},
        {"id": "slash/id"},
        {"id": "a" * 129},
        {"id": "é"},
        {"id": "trailing-newline\n"},
        {"id": 12},
        {"id": None},
        {"id": ["a"]},
        {"id": "ok", "tags": "red"},
        {"id": "ok", "tags": [1]},
        {"id": "ok", "tags": [""]},
        {"id": "ok", "capabilities": {"a": 1}},
        {"id": "ok", "channels": [None]},
        {"id": "ok", "status": "sleeping"},
        {"id": "ok", "status": True},
        {"id": "ok", "approval": "maybe"},
        {"id": "ok", "meta": []},
        {"id": "ok", "meta": "x"},
        {"id": "ok", "label": 7},
        {"id": "ok", "label": ""},
        {"id": "ok", "machine": {"x": 1}},
        {"id": "ok", "label": "nul\u0000byte"},
    ],
)
async def test_register_rejects_bad_fields(
    http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    await error_of(await http.post("/api/agents", json=body), 400, "invalid_request")
    assert await ids(await http.get("/api/agents")) == []


async def test_patch_rejects_bad_fields_and_changes_nothing(http: aiohttp.ClientSession) -> None:
    original = await register(http, "keep", tags=["t"])
    for body in (
        {"tags": "t"},
        {"status": "gone"},
        {"approval": 1},
        {"meta": [1]},
        {"label": "ok", "channels": [3]},
    ):
        await error_of(await http.patch("/api/agents/keep", json=body), 400, "invalid_request")
    assert await (await http.get("/api/agents/keep")).json() == original


async def test_bad_agent_id_in_path(http: aiohttp.ClientSession) -> None:
    await error_of(await http.get("/api/agents/bad%20id"), 404, "not_found")
    await error_of(await http.get("/api/agents/" + "a" * 129), 404, "not_found")

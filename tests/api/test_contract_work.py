"""Contract sections 6 (pairs) and 7 (tasks, integrations), line by line, against a real relay:
a guard that the audited behaviour stays as the contract words it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay

ADMIN = {"Authorization": "Bearer contract-admin-token"}
WATCH = {"Authorization": "Bearer watch-token-0123"}
LEGACY = {"X-Agent-Relay-Token": "legacy-token-0123"}
WRITER = {"Authorization": "Bearer writer-token-0123"}
READER = {"Authorization": "Bearer reader-token-0123"}
INTEGRATIONS = (
    Integration(name="watch", token="watch-token-0123", scopes=frozenset({"tasks:create"}),
                targets=("tag:oncall", "bob"), channels=("alerts",),
                callback_url="http://127.0.0.1:9/hook", callback_secret="cb-secret-value"),
    Integration(name="legacy", token="legacy-token-0123", scopes=frozenset({"events:create"})),
    Integration(name="writer", token="writer-token-0123", scopes=frozenset({"tasks:write"})),
    Integration(name="reader", token="reader-token-0123", scopes=frozenset({"tasks:read"})),
)
PAIR_FIELDS = {"id", "status", "initiator", "partner", "objective", "createdAt", "acceptedAt",
               "endedAt", "endedBy", "reason"}
TASK_FIELDS = {"id", "source", "type", "severity", "dedupeKey", "title", "body", "target",
               "channel", "status", "claimedBy", "claimedAt", "progress", "result",
               "occurrenceCount", "firstSeenAt", "lastSeenAt", "createdAt", "updatedAt",
               "messageId", "meta"}


@pytest.fixture
async def api(relay_factory: Callable[..., Any]) -> AsyncIterator[aiohttp.ClientSession]:
    relay: Relay = await relay_factory(token="contract-admin-token", integrations=INTEGRATIONS,
                                       integration_rate_limit_per_minute=6)
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        for agent, tags in (("ann", ["dev"]), ("bob", ["dev", "oncall"]), ("cy", ["oncall"])):
            await call(session, "POST", "/agents", {"id": agent, "tags": tags}, want=201)
        yield session


async def call(session: aiohttp.ClientSession, method: str, path: str,
               body: dict[str, Any] | None = None, want: int = 200,
               headers: dict[str, str] | None = None) -> Any:
    async with session.request(method, "/api" + path, json=body,
                               headers=headers or ADMIN) as resp:
        data = await resp.json()
        assert resp.status == want, (method, path, resp.status, data)
        return data


async def test_pair_lifecycle_fields_and_errors(api: aiohttp.ClientSession) -> None:
    await call(api, "POST", "/pairs", {"from": "ann", "to": "nobody"}, want=404)
    ambiguous = await call(api, "POST", "/pairs", {"from": "ann", "to": "oncall"}, want=409)
    assert ambiguous["code"] == "ambiguous_target" and ambiguous["candidates"] == ["bob", "cy"]
    pair = await call(api, "POST", "/pairs", {"from": "ann", "to": "tag:dev"}, want=201)
    assert pair.keys() >= PAIR_FIELDS and pair["status"] == "pending" and pair["partner"] == "bob"
    busy = await call(api, "POST", "/pairs", {"from": "cy", "to": "id:bob"}, want=409)
    assert busy["code"] == "busy"
    inbox = await call(api, "GET", "/messages?for=bob")
    assert inbox["messages"][-1]["meta"]["pairId"] == pair["id"]
    path = f"/pairs/{pair['id']}"
    assert (await call(api, "POST", path + "/accept", {"agent": "ann"}, want=403))["code"] == (
        "forbidden")
    await call(api, "POST", path + "/messages", {"from": "ann", "body": "hi"}, want=409)
    active = await call(api, "POST", path + "/accept", {"agent": "bob"})
    assert active["status"] == "active" and active["acceptedAt"]
    await call(api, "POST", path + "/messages", {"from": "cy", "body": "hi"}, want=403)
    said = await call(api, "POST", path + "/messages", {"from": "ann", "body": "hi"}, want=201)
    assert said["recipients"] == ["bob"] and said["meta"]["pairId"] == pair["id"]
    rejected = await call(api, "POST", path + "/reject", {"agent": "bob"}, want=409)
    assert rejected["code"] == "invalid_state"
    ended = await call(api, "POST", path + "/hangup", {"agent": "bob", "reason": "done"})
    assert (ended["status"], ended["endedBy"], ended["reason"]) == ("ended", "bob", "done")
    listed = await call(api, "GET", "/pairs?agent=ann&status=ended")
    assert [p["id"] for p in listed["pairs"]] == [pair["id"]]


async def test_ingress_scopes_allowlists_dedupe_and_resolve(api: aiohttp.ClientSession) -> None:
    event = {"type": "alert", "title": "disk", "target": "tag:oncall", "dedupeKey": "d1"}
    await call(api, "POST", "/integrations/events", {**event, "target": "ann"}, 403, WATCH)
    await call(api, "POST", "/integrations/events", {**event, "channel": "x"}, 403, WATCH)
    await call(api, "POST", "/integrations/events", event, 403, READER)
    first = await call(api, "POST", "/integrations/events", event, 201, WATCH)
    task = first["task"]
    assert first["deduped"] is False and task.keys() >= TASK_FIELDS
    message = await call(api, "GET", f"/messages/{task['messageId']}")
    assert message["claimable"] is True and message["from"] == "watch"
    again = await call(api, "POST", "/integrations/events", event, 200, WATCH)
    assert again["deduped"] is True and again["task"]["occurrenceCount"] == 2
    assert again["task"]["messageId"] == task["messageId"]
    assert again["task"]["lastSeenAt"] >= task["lastSeenAt"]
    resolve = {"type": "alert", "dedupeKey": "d1", "status": "resolved"}
    done = await call(api, "POST", "/integrations/events", resolve, 200, WATCH)
    assert done["task"]["status"] == "done"
    await call(api, "POST", "/integrations/events", resolve, 404, WATCH)
    limited = await api.post("/api/integrations/events", json=event, headers=WATCH)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    for headers in (LEGACY, WRITER):
        await call(api, "POST", "/integrations/events", event, 201, headers)
    history = await call(api, "GET", f"/tasks/{task['id']}/events")
    assert [e["type"] for e in history["events"]] == ["created", "occurrence", "resolved"]
    assert all(set(e) == {"id", "taskId", "type", "actor", "data", "createdAt"}
               for e in history["events"])


async def test_task_claims_status_and_listings(api: aiohttp.ClientSession) -> None:
    created = await call(api, "POST", "/integrations/events",
                         {"type": "ci", "title": "flaky", "target": "tag:dev"}, 201, WRITER)
    task = created["task"]
    claimed = await call(api, "POST", f"/messages/{task['messageId']}/claim", {"agent": "ann"})
    assert claimed["claimedBy"] == "ann"
    assert (await call(api, "GET", f"/tasks/{task['id']}"))["claimedBy"] == "ann"
    lost = await call(api, "POST", f"/tasks/{task['id']}/claim", {"agent": "bob"}, want=409)
    assert lost["code"] == "already_claimed" and lost["claimedBy"] == "ann"
    path = f"/tasks/{task['id']}/status"
    await call(api, "PATCH", path, {"agent": "bob", "status": "in_progress"}, want=403)
    moved = await call(api, "PATCH", path, {"agent": "ann", "status": "done", "result": "ok"})
    assert moved["status"] == "done" and moved["result"] == "ok"
    late = await call(api, "PATCH", path, {"agent": "ann", "status": "in_progress"}, want=409)
    assert late["code"] == "invalid_state"
    listed = await call(api, "GET", "/tasks?status=done&source=writer&target=tag:dev&limit=1")
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    for bad in ("0", "1001"):
        await call(api, "GET", f"/tasks?limit={bad}", want=400)
    integrations = await call(api, "GET", "/integrations")
    assert "token-0123" not in str(integrations) and "cb-secret-value" not in str(integrations)
    channels = await call(api, "GET", "/channels")
    assert channels["channels"][0]["name"] == "telegram"

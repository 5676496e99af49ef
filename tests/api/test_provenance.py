"""Provenance (`sentBy`: who the relay authenticated, beside the free `from` name) and
Idempotency-Keys bound to their payload (same key, other body: 422, nothing stored)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay
from tests.helpers import register

ADMIN = "prov-admin-token"
CI = "prov-ci-token"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CI_H = {"Authorization": f"Bearer {CI}"}
INTEGRATIONS = (
    Integration("ci", CI, frozenset({"messages:write", "messages:read", "tasks:create"})),
)


async def post(http: aiohttp.ClientSession, path: str, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def count(http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> int:
    stats = await (await http.get("/api/stats", headers=headers)).json()
    total: int = stats["messages"]["total"]
    return total


async def test_sent_by_names_the_authenticated_principal(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory(token=ADMIN, integrations=INTEGRATIONS)
    async with aiohttp.ClientSession(base_url=relay.url, headers=ADMIN_H) as http:
        await register(http, "bob", tags=["ops"])
        stream = await http.get("/api/events", params={"for": "bob"})
        # `from` is whatever name the client chose; sentBy is who the relay authenticated
        status, by_admin = await post(http, "/api/messages",
                                      {"from": "ci", "to": "bob", "body": "a"})
        assert status == 201 and by_admin["sentBy"] == "admin" and by_admin["from"] == "ci"
        status, by_ci = await post(http, "/api/messages",
                                   {"from": "admin", "to": "bob", "body": "b"}, CI_H)
        assert status == 201 and by_ci["sentBy"] == "integration:ci"
        status, event = await post(http, "/api/integrations/events",
                                   {"type": "alert", "title": "disk", "target": "bob"}, CI_H)
        assert status == 201, event
        listed = (await (await http.get("/api/messages", params={"for": "bob"})).json())
        assert [m["sentBy"] for m in listed["messages"]] == ["admin", "integration:ci",
                                                            "integration:ci"]
        one = await (await http.get(f"/api/messages/{by_ci['id']}")).json()
        assert one["sentBy"] == "integration:ci"
        seen: list[str] = []
        while len(seen) < 3:
            line = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
            if line.startswith("data:") and '"sentBy"' in line:
                seen.append(json.loads(line[5:])["sentBy"])
        assert seen == ["admin", "integration:ci", "integration:ci"]
        stream.close()
        spec = await (await http.get("/api/openapi.json")).json()
        assert "sentBy" in spec["components"]["schemas"]["Message"]["required"]


async def test_a_token_less_relay_records_local(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    status, message = await post(http, "/api/messages", {"from": "x", "to": "bob", "body": "hi"})
    assert status == 201 and message["sentBy"] == "local"
    await register(http, "amy")
    status, pair = await post(http, "/api/pairs", {"from": "amy", "to": "bob"})
    assert status == 201
    invite = await (await http.get(f"/api/messages/{pair['inviteMessageId']}")).json()
    assert invite["sentBy"] == "local"


async def test_same_key_other_body_is_422_and_same_body_replays(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "bob")
    await register(http, "amy")
    key = {"Idempotency-Key": "retry-1"}
    first = {"from": "amy", "to": "bob", "body": "deploy v1", "meta": {"a": 1, "b": 2}}
    status, original = await post(http, "/api/messages", first, key)
    assert status == 201
    before = await count(http)
    for changed in ({**first, "body": "deploy v2"}, {**first, "to": "broadcast"},
                    {**first, "meta": {"a": 1}}, {**first, "claimable": True}):
        status, answer = await post(http, "/api/messages", changed, key)
        assert status == 422, answer
        assert answer["code"] == "idempotency_mismatch" and "retry-1" in answer["error"]
    assert await count(http) == before
    # the same request again, keys reordered and spaced differently: the original, 200
    raw = b'{"meta": {"b": 2, "a": 1},  "body": "deploy v1", "to": "bob", "from": "amy"}'
    async with http.post("/api/messages", data=raw,
                         headers={**key, "Content-Type": "application/json"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["id"] == original["id"]
    # a key is per sender: another sender may use the same one for its own message
    status, _ = await post(http, "/api/messages", {**first, "from": "bob", "to": "amy"}, key)
    assert status == 201
    # pairs and pair messages bind their key the same way
    status, pair = await post(http, "/api/pairs", {"from": "amy", "to": "bob"}, key)
    assert status == 201
    status, answer = await post(http, "/api/pairs", {"from": "amy", "to": "bob",
                                                     "objective": "other"}, key)
    assert (status, answer["code"]) == (422, "idempotency_mismatch")
    status, again = await post(http, "/api/pairs", {"from": "amy", "to": "bob"}, key)
    assert status == 200 and again["id"] == pair["id"]
    await post(http, f"/api/pairs/{pair['id']}/accept", {"agent": "bob"})
    pkey = {"Idempotency-Key": "pm-1"}
    path = f"/api/pairs/{pair['id']}/messages"
    assert (await post(http, path, {"from": "amy", "body": "one"}, pkey))[0] == 201
    status, answer = await post(http, path, {"from": "amy", "body": "two"}, pkey)
    assert (status, answer["code"]) == (422, "idempotency_mismatch")
    assert (await post(http, path, {"from": "amy", "body": "one"}, pkey))[0] == 200


async def test_integration_events_bind_their_key(relay_factory: Callable[..., Any]) -> None:
    relay: Relay = await relay_factory(token=ADMIN, integrations=INTEGRATIONS)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await http.post("/api/agents", json={"id": "bob"}, headers=ADMIN_H)
        key = {**CI_H, "Idempotency-Key": "alert-1"}
        event = {"type": "alert", "title": "disk full", "target": "bob", "severity": "high"}
        status, created = await post(http, "/api/integrations/events", event, key)
        assert status == 201
        before = await count(http, ADMIN_H)
        status, answer = await post(http, "/api/integrations/events",
                                    {**event, "severity": "low"}, key)
        assert (status, answer["code"]) == (422, "idempotency_mismatch"), answer
        status, replay = await post(http, "/api/integrations/events", event, key)
        assert status == 200 and replay["task"]["id"] == created["task"]["id"]
        assert await count(http, ADMIN_H) == before

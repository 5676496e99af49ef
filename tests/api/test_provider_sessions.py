"""Provider support in the API: delivery marks (PATCH delivered, deliveredAt, ?undelivered=)
and the session guard (epoch, instanceId; 409 for a taken-over session, 404 once pruned)."""

from __future__ import annotations

import aiohttp

from tests.helpers import register


async def _send(http: aiohttp.ClientSession, to: str, body: str) -> int:
    resp = await http.post("/api/messages", json={"from": "ci", "to": to, "body": body})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def test_delivered_mark_shows_in_the_inbox_and_filters_undelivered(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "bob")
    await register(http, "carol")
    first = await _send(http, "bob", "one")
    second = await _send(http, "bob", "two")
    resp = await http.patch(f"/api/messages/{first}", json={"agent": "bob", "delivered": True})
    assert resp.status == 200, await resp.text()
    marked = await resp.json()
    assert marked["delivered"] is True and marked["deliveredAt"].endswith("Z")
    assert marked["read"] is False  # delivered is not read
    again = await (await http.patch(f"/api/messages/{first}",
                                    json={"agent": "bob", "delivered": True})).json()
    assert again["deliveredAt"] == marked["deliveredAt"]  # the first delivery time stays

    inbox = (await (await http.get("/api/messages", params={"for": "bob"})).json())["messages"]
    assert [(m["id"], m["delivered"]) for m in inbox] == [(first, True), (second, False)]
    assert inbox[1]["deliveredAt"] is None
    pending = await (await http.get("/api/messages",
                                    params={"for": "bob", "undelivered": "true"})).json()
    assert [m["id"] for m in pending["messages"]] == [second]

    # not a recipient: 403, nothing changed; neither flag: 400; wrong type: 400
    resp = await http.patch(f"/api/messages/{second}", json={"agent": "carol", "delivered": True})
    assert resp.status == 403
    resp = await http.patch(f"/api/messages/{second}", json={"agent": "bob"})
    assert resp.status == 400 and (await resp.json())["code"] == "invalid_request"
    resp = await http.patch(f"/api/messages/{second}", json={"agent": "bob", "delivered": "y"})
    assert resp.status == 400
    resp = await http.patch("/api/messages/999999", json={"agent": "bob", "delivered": True})
    assert resp.status == 404
    pending = await (await http.get("/api/messages",
                                    params={"for": "bob", "undelivered": "1"})).json()
    assert [m["id"] for m in pending["messages"]] == [second]


async def test_a_newer_instance_takes_the_agent_over(http: aiohttp.ClientSession) -> None:
    plain = await register(http, "s1")
    assert plain["epoch"] == 1
    first = await register(http, "s1", instanceId="window-a")
    assert first["epoch"] == 2 and first["instanceId"] == "window-a"
    same = await register(http, "s1", instanceId="window-a")
    assert same["epoch"] == 2  # the same instance registering again keeps its epoch
    hook = await register(http, "s1", status="busy")  # no instanceId: no takeover
    assert hook["epoch"] == 2

    guard_a = {"instanceId": "window-a", "epoch": 2}
    resp = await http.post("/api/agents/s1/heartbeat", json=guard_a)
    assert resp.status == 200, await resp.text()

    second = await register(http, "s1", instanceId="window-b")
    assert second["epoch"] == 3
    resp = await http.post("/api/agents/s1/heartbeat", json={**guard_a, "status": "idle"})
    assert resp.status == 409, await resp.text()
    error = await resp.json()
    assert error["code"] == "invalid_state" and error["superseded"] is True
    assert error["epoch"] == 3
    resp = await http.patch("/api/agents/s1", json={**guard_a, "status": "idle"})
    assert resp.status == 409
    agent = await (await http.get("/api/agents/s1")).json()
    assert agent["status"] == "online"  # the refused updates changed nothing

    resp = await http.post("/api/agents/s1/heartbeat",
                           json={"instanceId": "window-b", "epoch": 3, "status": "idle"})
    assert resp.status == 200
    assert (await resp.json())["status"] == "idle"
    resp = await http.post("/api/agents/s1/heartbeat", json={"status": "busy"})  # unguarded
    assert resp.status == 200

    resp = await http.post("/api/agents/s1/heartbeat", json={"instanceId": "window-b"})
    assert resp.status == 400  # instanceId and epoch go together
    resp = await http.post("/api/agents/s1/heartbeat", json={"instanceId": "x", "epoch": 0})
    assert resp.status == 400

    assert (await http.delete("/api/agents/s1")).status == 204
    resp = await http.post("/api/agents/s1/heartbeat",
                           json={"instanceId": "window-b", "epoch": 3})
    assert resp.status == 404  # pruned or removed: the provider registers again
    again = await register(http, "s1", instanceId="window-b")
    assert again["epoch"] == 1

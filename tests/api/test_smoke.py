"""A first end-to-end pass through the core API against a real relay."""

from __future__ import annotations

import aiohttp


async def test_register_send_read(http: aiohttp.ClientSession) -> None:
    for agent in ("alice", "bob"):
        resp = await http.post("/api/agents", json={"id": agent, "tags": ["team"]})
        assert resp.status == 201
    resp = await http.post("/api/messages", json={"from": "alice", "to": "tag:team", "body": "hi"})
    assert resp.status == 201
    sent = await resp.json()
    assert sent["recipients"] == ["bob"]
    resp = await http.get("/api/messages", params={"for": "bob"})
    inbox = await resp.json()
    assert [m["body"] for m in inbox["messages"]] == ["hi"]
    assert inbox["cursor"] == sent["id"]
    assert inbox["messages"][0]["read"] is False

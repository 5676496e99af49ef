"""Lists without ?limit= return at most 100 items, and a cursor continues them."""

from __future__ import annotations

import asyncio

import aiohttp


async def test_agents_list_pages_by_100_with_a_next_cursor(http: aiohttp.ClientSession) -> None:
    ids = [f"agent-{n:03d}" for n in range(150)]
    await asyncio.gather(*(http.post("/api/agents", json={"id": i}) for i in ids))
    first = await (await http.get("/api/agents")).json()
    assert [a["id"] for a in first["agents"]] == ids[:100]
    assert first["next"] == ids[99]
    rest = await (await http.get("/api/agents", params={"after": first["next"]})).json()
    assert [a["id"] for a in rest["agents"]] == ids[100:] and "next" not in rest
    small = await (await http.get("/api/agents", params={"limit": "7", "after": ids[0]})).json()
    assert [a["id"] for a in small["agents"]] == ids[1:8] and small["next"] == ids[7]
    found = await (await http.get("/api/agents/find", params={"capability": "chat"})).json()
    assert len(found["agents"]) == 100 and found["next"] == ids[99]


async def test_threads_page_with_since(http: aiohttp.ClientSession) -> None:
    await http.post("/api/agents", json={"id": "bob"})
    root = await (await http.post("/api/messages", json={
        "from": "a", "to": "bob", "body": "root"})).json()
    for n in range(120):
        await http.post("/api/messages", json={
            "from": "a", "to": "bob", "body": f"r{n}", "replyTo": root["id"]})
    page = await (await http.get(f"/api/messages/{root['id']}/thread")).json()
    assert len(page["messages"]) == 100 and page["messages"][0]["id"] == root["id"]
    more = await (await http.get(f"/api/messages/{root['id']}/thread",
                                 params={"since": page["next"]})).json()
    assert len(more["messages"]) == 21 and "next" not in more

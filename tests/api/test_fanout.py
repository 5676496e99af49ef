"""Fan-out stored once (issue 12): a selector message's recipients are one shared audience, not
a row per recipient nor a list copied into its events, and every reader still sees exactly
what it received: inbox, read state, unread counts, claims, SSE live and replay."""

from __future__ import annotations

from typing import Any

import aiohttp

from relayd.daemon.relay import Relay
from tests.api.test_sse import latest_event_id, sse
from tests.helpers import register


async def broadcast(http: aiohttp.ClientSession, body: str, **extra: Any) -> dict[str, Any]:
    resp = await http.post("/api/messages", json={"from": "ops", "to": "broadcast",
                                                  "body": body, **extra})
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def rows(relay: Relay, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the relay's own database (either backend), through its store."""
    result: list[tuple[Any, ...]] = await relay.ctx.store.run_read(
        lambda tx: [tuple(row) for row in tx.all(sql)]
    )
    return result


async def inbox(http: aiohttp.ClientSession, agent: str, **params: str) -> list[int]:
    resp = await http.get("/api/messages", params={"for": agent, **params})
    assert resp.status == 200
    return [m["id"] for m in (await resp.json())["messages"]]


async def test_broadcasts_share_one_audience_and_copy_no_list(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    agents = sorted(f"a{i}" for i in range(30))
    for agent in agents:
        await register(http, agent)
    sent = [await broadcast(http, f"all {i}") for i in range(5)]
    assert all(m["recipients"] == agents for m in sent)
    assert await rows(relay, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    assert await rows(relay, "SELECT COUNT(*), SUM(size) FROM audiences") == [(1, 30)]
    stored = await rows(relay, "SELECT data, audience, audience_message FROM events"
                         " WHERE type = 'message.new'")
    assert [r[2] for r in stored] == [m["id"] for m in sent]
    assert all(r[1] is None and '"recipients"' not in r[0] for r in stored)
    # the sender is left out by the queries, not by its own copy of the set
    await register(http, "ops")
    from_member = await broadcast(http, "from a member")
    assert from_member["recipients"] == agents
    assert from_member["id"] not in (await inbox(http, "ops"))


async def test_inbox_read_state_and_unread_counts(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    await register(http, "carol")
    first = (await broadcast(http, "one"))["id"]
    direct = (await (await http.post("/api/messages", json={
        "from": "ops", "to": "bob", "body": "just bob"})).json())["id"]
    second = (await broadcast(http, "two"))["id"]
    assert await inbox(http, "bob") == [first, direct, second]
    assert await inbox(http, "bob", order="desc", limit="2") == [second, direct]
    assert await inbox(http, "carol", since=str(first)) == [second]
    stats = await (await http.get("/api/stats")).json()
    assert stats["messages"]["unread"] == 5
    resp = await http.patch(f"/api/messages/{first}", json={"agent": "bob", "read": True})
    assert resp.status == 200 and (await resp.json())["read"] is True
    assert await inbox(http, "bob", unread="true") == [direct, second]
    listed = (await (await http.get("/api/messages", params={"for": "bob"})).json())["messages"]
    assert [m["read"] for m in listed] == [True, False, False]
    assert (await (await http.get("/api/stats")).json())["messages"]["unread"] == 4
    await http.patch(f"/api/messages/{first}", json={"agent": "bob", "read": False})
    assert await inbox(http, "bob", unread="true") == [first, direct, second]
    outsider = await http.patch(f"/api/messages/{first}", json={"agent": "ops", "read": True})
    assert outsider.status == 403


async def test_only_agents_there_when_it_was_sent(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    before = (await broadcast(http, "before dave"))["id"]
    await register(http, "dave")
    after = await broadcast(http, "with dave")
    assert after["recipients"] == ["bob", "dave"]
    assert await inbox(http, "dave") == [after["id"]]
    assert await inbox(http, "bob") == [before, after["id"]]
    # a removed agent that comes back under its id finds none of its old messages
    assert (await http.delete("/api/agents/bob")).status == 204
    await register(http, "bob")
    assert await inbox(http, "bob") == []
    assert (await broadcast(http, "again"))["recipients"] == ["bob", "dave"]


async def test_claims_on_a_broadcast(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    await register(http, "carol")
    job = (await broadcast(http, "job", claimable=True))["id"]
    outsider = await http.post(f"/api/messages/{job}/claim", json={"agent": "ops"})
    assert outsider.status == 403
    won = await http.post(f"/api/messages/{job}/claim", json={"agent": "carol"})
    assert won.status == 200
    lost = await http.post(f"/api/messages/{job}/claim", json={"agent": "bob"})
    assert lost.status == 409 and (await lost.json())["claimedBy"] == "carol"


async def test_sse_for_live_and_replay(http: aiohttp.ClientSession) -> None:
    await register(http, "bob", tags=["crew"])
    start = await latest_event_id(http)
    async with (sse(http, None, **{"for": "bob"}) as bob,
                sse(http, None, **{"for": "ops"}) as sender):
        to_all = (await broadcast(http, "live"))["id"]
        to_crew = (await (await http.post("/api/messages", json={
            "from": "ops", "to": "tag:crew", "body": "crew", "claimable": True})).json())["id"]
        await http.post(f"/api/messages/{to_crew}/claim", json={"agent": "bob"})
        live = [(e.type, e.data["id"]) for e in await bob.until_quiet()]
        assert [e.type for e in await sender.until_quiet()] == []
    assert live == [("message.new", to_all), ("message.new", to_crew),
                    ("message.claimed", to_crew)]
    # dave registers after both were sent: a replay from before them shows him neither, and
    # a late claimable delivery would come as its own event (this one is claimed already)
    await register(http, "dave", tags=["crew"])
    async with sse(http, last_event_id=start, **{"for": "bob"}) as replay:
        replayed = [(e.type, e.data.get("id")) for e in await replay.until_quiet()]
    assert replayed == [*live, ("agent.status", "dave")]
    async with sse(http, last_event_id=start, **{"for": "dave"}) as replay:
        assert [e.type for e in await replay.until_quiet()] == ["agent.status"]
    # deleting the message keeps its events visible to who received it
    assert (await http.delete(f"/api/messages/{to_all}")).status == 204
    async with sse(http, last_event_id=start, **{"for": "bob"}) as replay:
        again = [(e.type, e.data.get("id")) for e in await replay.until_quiet()]
    assert again == [*replayed, ("message.deleted", to_all)]


async def test_late_claimable_delivery_is_seen_once(http: aiohttp.ClientSession) -> None:
    await register(http, "bob", tags=["crew"])
    start = await latest_event_id(http)
    job = (await (await http.post("/api/messages", json={
        "from": "ops", "to": "tag:crew", "body": "open job", "claimable": True})).json())["id"]
    await register(http, "erin", tags=["crew"])  # matches later: the job is offered to her
    assert await inbox(http, "erin") == [job]
    async with sse(http, last_event_id=start, **{"for": "erin"}) as replay:
        seen = [(e.type, e.data["id"]) for e in await replay.until_quiet()]
    assert seen == [("agent.status", "erin"), ("message.new", job)]
    claimed = await http.post(f"/api/messages/{job}/claim", json={"agent": "erin"})
    assert claimed.status == 200


async def test_delivered_marks_and_the_thread_view(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    await register(http, "carol")
    sent = (await broadcast(http, "note"))["id"]
    assert await inbox(http, "bob", undelivered="true") == [sent]
    marked = await http.patch(f"/api/messages/{sent}", json={"agent": "bob", "delivered": True})
    assert marked.status == 200, await marked.text()
    assert await inbox(http, "bob", undelivered="true") == []
    assert await inbox(http, "carol", undelivered="true") == [sent]
    await http.patch(f"/api/messages/{sent}", json={"agent": "carol", "read": True})
    thread = (await (await http.get(f"/api/messages/{sent}/thread")).json())["messages"]
    assert [(d["agent"], d["read"]) for d in thread[0]["deliveries"]] == [
        ("bob", False), ("carol", True)]

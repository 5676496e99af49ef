"""What the dashboard reads beyond the core API: per-recipient read state in threads, the
message rate in /api/stats, and the snapshot embedded in the page."""

from __future__ import annotations

import json

import aiohttp

from tests.helpers import register


async def test_thread_names_each_recipient_and_its_read_state(
    http: aiohttp.ClientSession,
) -> None:
    for agent in ("ann", "ben", "cy"):
        await register(http, agent, tags=["team"])
    root = await (await http.post("/api/messages", json={
        "from": "ann", "to": "tag:team", "body": "standup?"})).json()
    await http.patch(f"/api/messages/{root['id']}", json={"agent": "cy", "read": True})
    reply = await (await http.post("/api/messages", json={
        "from": "ben", "to": "ann", "body": "yes", "replyTo": root["id"]})).json()
    thread = (await (await http.get(f"/api/messages/{reply['id']}/thread")).json())["messages"]
    assert [m["id"] for m in thread] == [root["id"], reply["id"]]
    first, second = (m["deliveries"] for m in thread)
    assert [(d["agent"], d["read"]) for d in first] == [("ben", False), ("cy", True)]
    assert first[1]["readAt"].endswith("Z") and first[0]["readAt"] is None
    assert second == [{"agent": "ann", "read": False, "readAt": None}]


async def test_stats_count_messages_per_minute_over_the_last_hour(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "ann")
    for n in range(3):
        await http.post("/api/messages", json={"from": "x", "to": "ann", "body": f"m{n}"})
    rate = (await (await http.get("/api/stats")).json())["messageRate"]
    assert rate["bucketSeconds"] == 60 and len(rate["counts"]) == 60
    assert rate["counts"][-1] == 3 and sum(rate["counts"]) == 3
    assert rate["until"].endswith(":00.000Z")


async def test_the_page_embeds_a_snapshot_for_a_tokenless_relay(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "ann")
    await http.post("/api/messages", json={"from": "x", "to": "ann", "body": "hello"})
    events = await (await http.get("/api/stats")).json()
    page = await (await http.get("/")).text()
    block = page.split('<script type="application/json" id="bootstrap">', 1)[1]
    data = json.loads(block.split("</script>", 1)[0])
    assert [a["id"] for a in data["agents"]] == ["ann"]
    assert data["messages"][0]["body"] == "hello"
    assert data["eventId"] >= 2 and data["stats"]["messages"]["total"] == 1
    assert data["channels"][0]["name"] == "telegram"
    assert events["messages"]["total"] == 1

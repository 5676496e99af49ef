"""Claims: exactly one winner, also when racers learn of the message by long-poll and SSE."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.helpers import register

RACERS = 30


async def send(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    resp = await http.post("/api/messages", json={"from": "ci", "body": "job", **fields})
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def claim(http: aiohttp.ClientSession, message_id: int, agent: str) -> tuple[int, Any]:
    resp = await http.post(f"/api/messages/{message_id}/claim", json={"agent": agent})
    return resp.status, await resp.json()


def assert_one_winner(answers: list[tuple[int, Any]]) -> str:
    winners = [body for status, body in answers if status == 200]
    assert len(winners) == 1, answers
    winner = winners[0]["claimedBy"]
    for status, body in answers:
        if status != 200:
            assert status == 409, body
            assert body["code"] == "already_claimed"
            assert body["claimedBy"] == winner
            assert body["error"]
    return str(winner)


async def test_thirty_concurrent_claimers_one_winner(http: aiohttp.ClientSession) -> None:
    agents = [f"worker-{i}" for i in range(RACERS)]
    for agent in agents:
        await register(http, agent, tags=["pool"])
    message = await send(http, to="tag:pool", claimable=True)
    assert sorted(message["recipients"]) == sorted(agents)
    answers = await asyncio.gather(*(claim(http, message["id"], a) for a in agents))
    winner = assert_one_winner(answers)
    stored = await (await http.get(f"/api/messages/{message['id']}")).json()
    assert stored["claimedBy"] == winner and stored["claimedAt"].endswith("Z")
    again = await claim(http, message["id"], winner)
    assert again[0] == 200 and again[1]["claimedBy"] == winner
    assert again[1]["claimedAt"] == stored["claimedAt"]


async def test_claim_errors(http: aiohttp.ClientSession) -> None:
    for agent in ("w1", "w2", "outsider"):
        await register(http, agent, tags=["pool"] if agent != "outsider" else [])
    plain = await send(http, to="tag:pool")
    status, body = await claim(http, plain["id"], "w1")
    assert (status, body["code"]) == (409, "invalid_state")
    job = await send(http, to="tag:pool", claimable=True)
    status, body = await claim(http, job["id"], "outsider")
    assert (status, body["code"]) == (403, "forbidden")
    status, body = await claim(http, job["id"], "nobody-registered")
    assert (status, body["code"]) == (403, "forbidden")
    assert (await claim(http, job["id"], "w1"))[0] == 200
    status, body = await claim(http, job["id"], "outsider")
    assert (status, body["code"]) == (403, "forbidden"), "not a recipient, whoever holds it"
    status, body = await claim(http, 9999, "w1")
    assert (status, body["code"]) == (404, "not_found")
    for bad in ({}, {"agent": 5}, {"agent": "bad id"}, {"agent": ""}):
        resp = await http.post(f"/api/messages/{job['id']}/claim", json=bad)
        assert resp.status == 400
        assert (await resp.json())["code"] == "invalid_request"
    stored = await (await http.get(f"/api/messages/{job['id']}")).json()
    assert stored["claimedBy"] == "w1"


async def test_direct_claimable_only_for_its_target(http: aiohttp.ClientSession) -> None:
    await register(http, "solo")
    await register(http, "other")
    job = await send(http, to="id:solo", claimable=True)
    assert (await claim(http, job["id"], "other"))[0] == 403
    assert (await claim(http, job["id"], "solo"))[0] == 200


async def _claim_via_long_poll(
    http: aiohttp.ClientSession, agent: str, since: int, ready: asyncio.Event
) -> tuple[int, Any]:
    poll = asyncio.create_task(
        http.get("/api/messages", params={"for": agent, "since": since, "wait": 10})
    )
    ready.set()
    resp = await poll
    messages = (await resp.json())["messages"]
    assert len(messages) == 1
    return await claim(http, messages[0]["id"], agent)


async def _claim_via_sse(
    http: aiohttp.ClientSession, agent: str, ready: asyncio.Event
) -> tuple[int, Any]:
    async with http.get("/api/events", params={"for": agent}) as stream:
        assert (await stream.content.readline()).startswith(b":")
        ready.set()
        kind = ""
        async for raw in stream.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "message.new":
                message_id = json.loads(line[6:])["id"]
                return await claim(http, message_id, agent)
    raise AssertionError("stream ended before the message arrived")


async def test_race_across_long_poll_sse_and_direct_claims(
    http: aiohttp.ClientSession,
) -> None:
    pollers = [f"poll-{i}" for i in range(10)]
    listeners = [f"sse-{i}" for i in range(10)]
    grabbers = [f"grab-{i}" for i in range(10)]
    for agent in pollers + listeners + grabbers:
        await register(http, agent, tags=["crew"])
    since = (await (await http.get("/api/messages/cursor")).json())["cursor"]
    readiness = [asyncio.Event() for _ in pollers + listeners]
    racers = [
        *(
            asyncio.create_task(_claim_via_long_poll(http, a, since, r))
            for a, r in zip(pollers, readiness[:10], strict=True)
        ),
        *(
            asyncio.create_task(_claim_via_sse(http, a, r))
            for a, r in zip(listeners, readiness[10:], strict=True)
        ),
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readiness)), 5)
    await asyncio.sleep(0.2)  # let the long-polls reach the server and subscribe
    message = await send(http, to="tag:crew", claimable=True)
    direct = [asyncio.create_task(claim(http, message["id"], a)) for a in grabbers]
    answers = await asyncio.wait_for(asyncio.gather(*racers, *direct), 10)
    assert len(answers) == 30
    winner = assert_one_winner(list(answers))
    stored = await (await http.get(f"/api/messages/{message['id']}")).json()
    assert stored["claimedBy"] == winner


async def test_claim_event_reaches_recipients(http: aiohttp.ClientSession) -> None:
    for agent in ("w1", "w2", "outsider"):
        await register(http, agent, tags=["pool"] if agent != "outsider" else [])
    job = await send(http, to="tag:pool", claimable=True)
    latest = (await (await http.get("/api/stats")).json())["events"]["latestId"]
    await claim(http, job["id"], "w2")
    seen: dict[str, list[tuple[str, Any]]] = {}
    for reader in ("w1", "outsider"):
        async with http.get(
            "/api/events", params={"for": reader}, headers={"Last-Event-ID": str(latest)}
        ) as stream:
            seen[reader] = await _events_until_quiet(stream)
    assert ("message.claimed", {"id": job["id"], "claimedBy": "w2"}) in seen["w1"]
    assert all(kind != "message.claimed" for kind, _ in seen["outsider"])


async def _events_until_quiet(stream: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    kind = ""
    while True:
        try:
            raw = await asyncio.wait_for(stream.content.readline(), 0.3)
        except TimeoutError:
            return events
        line = raw.decode().strip()
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))

"""Tasks: listing, claims shared with their message, the status machine, leases, SSE, stats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay
from relayd.domain import tasks as rules
from relayd.domain.models import now_ms
from tests.helpers import register

TOKEN = "monitor-token-0123456789"
MONITOR = Integration(name="monitor", token=TOKEN, scopes=frozenset({"tasks:create"}))
MON = {"Authorization": f"Bearer {TOKEN}"}
RACERS = 30


@pytest.fixture
async def relay(relay_factory: Callable[..., Any]) -> Relay:
    started: Relay = await relay_factory(integrations=(MONITOR,))
    return started


@pytest.fixture
async def http(relay: Relay) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        yield session


async def new_task(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    event = {"type": "alert", "title": "disk full", "target": "tag:oncall", **fields}
    resp = await http.post("/api/integrations/events", json=event, headers=MON)
    assert resp.status == 201, await resp.text()
    task: dict[str, Any] = (await resp.json())["task"]
    return task


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    resp = await http.request(method, path, json=body)
    return resp.status, await resp.json()


async def claim_task(http: aiohttp.ClientSession, task_id: int, agent: str) -> tuple[int, Any]:
    return await call(http, "POST", f"/api/tasks/{task_id}/claim", {"agent": agent})


async def claim_message(
    http: aiohttp.ClientSession, message_id: int, agent: str
) -> tuple[int, Any]:
    return await call(http, "POST", f"/api/messages/{message_id}/claim", {"agent": agent})


async def set_status(
    http: aiohttp.ClientSession, task_id: int, agent: str, status: str, **extra: Any
) -> tuple[int, Any]:
    body = {"agent": agent, "status": status, **extra}
    return await call(http, "PATCH", f"/api/tasks/{task_id}/status", body)


async def get_task(http: aiohttp.ClientSession, task_id: int) -> dict[str, Any]:
    status, task = await call(http, "GET", f"/api/tasks/{task_id}")
    assert status == 200
    return dict(task)


async def event_types(http: aiohttp.ClientSession, task_id: int) -> list[str]:
    status, body = await call(http, "GET", f"/api/tasks/{task_id}/events")
    assert status == 200
    return [e["type"] for e in body["events"]]


@pytest.fixture
async def oncall(http: aiohttp.ClientSession) -> list[str]:
    agents = ["bob", "carol"]
    for agent in agents:
        await register(http, agent, tags=["oncall"])
    return agents


# ----------------------------------------------------------------------------- listing


async def test_list_filters_and_limits(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    first = await new_task(http, dedupeKey="a")
    second = await new_task(http, dedupeKey="b", target="bob")
    await claim_task(http, second["id"], "bob")
    status, body = await call(http, "GET", "/api/tasks")
    assert status == 200 and [t["id"] for t in body["tasks"]] == [second["id"], first["id"]]
    status, body = await call(http, "GET", "/api/tasks?status=open")
    assert [t["id"] for t in body["tasks"]] == [first["id"]]
    status, body = await call(http, "GET", "/api/tasks?target=bob&source=monitor")
    assert [t["id"] for t in body["tasks"]] == [second["id"]]
    status, body = await call(http, "GET", "/api/tasks?status=&source=")
    assert len(body["tasks"]) == 2
    status, body = await call(http, "GET", "/api/tasks?source=nobody")
    assert body["tasks"] == []
    status, body = await call(http, "GET", "/api/tasks?limit=1")
    assert len(body["tasks"]) == 1
    for bad in ("limit=0", "limit=1001", "limit=x", "status=bogus"):
        status, body = await call(http, "GET", f"/api/tasks?{bad}")
        assert status == 400 and body["code"] == "invalid_request", bad
    for missing in ("/api/tasks/999", "/api/tasks/abc", "/api/tasks/999/events"):
        status, body = await call(http, "GET", missing)
        assert status == 404 and body["code"] == "not_found", missing
    task = await get_task(http, first["id"])
    assert set(task) >= {
        "id", "source", "type", "severity", "dedupeKey", "title", "body", "target", "channel",
        "status", "claimedBy", "claimedAt", "progress", "result", "occurrenceCount",
        "firstSeenAt", "lastSeenAt", "createdAt", "updatedAt", "messageId", "meta",
    }


# ----------------------------------------------------------------------------- claims


async def test_claiming_the_task_claims_its_message(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    task = await new_task(http)
    status, claimed = await claim_task(http, task["id"], "bob")
    assert status == 200 and claimed["status"] == "claimed" and claimed["claimedBy"] == "bob"
    status, message = await call(http, "GET", f"/api/messages/{task['messageId']}")
    assert message["claimedBy"] == "bob"
    status, body = await claim_message(http, task["messageId"], "carol")
    assert status == 409 and body["code"] == "already_claimed" and body["claimedBy"] == "bob"
    again = await claim_task(http, task["id"], "bob")
    assert again[0] == 200 and again[1]["claimedAt"] == claimed["claimedAt"]
    assert await event_types(http, task["id"]) == ["created", "claimed"]


async def test_claiming_the_message_claims_its_task(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    task = await new_task(http)
    status, message = await claim_message(http, task["messageId"], "carol")
    assert status == 200 and message["claimedBy"] == "carol"
    stored = await get_task(http, task["id"])
    assert stored["status"] == "claimed" and stored["claimedBy"] == "carol"
    status, body = await claim_task(http, task["id"], "bob")
    assert status == 409 and body["claimedBy"] == "carol"


async def test_claim_errors(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    await register(http, "outsider", tags=["dev"])
    task = await new_task(http)
    status, body = await claim_task(http, task["id"], "outsider")
    assert status == 403 and body["code"] == "forbidden"
    status, body = await claim_task(http, 4242, "bob")
    assert status == 404
    for bad in ({}, {"agent": ""}, {"agent": "bad id"}, {"agent": 3}):
        status, body = await call(http, "POST", f"/api/tasks/{task['id']}/claim", bad)
        assert status == 400, bad
    await set_status(http, task["id"], "bob", "cancelled")
    status, body = await claim_task(http, task["id"], "bob")
    assert status == 409 and body["code"] == "invalid_state"
    assert (await get_task(http, task["id"]))["claimedBy"] is None


async def test_thirty_racers_across_both_paths_one_winner(
    http: aiohttp.ClientSession,
) -> None:
    agents = [f"racer-{i}" for i in range(RACERS)]
    for agent in agents:
        await register(http, agent, tags=["oncall"])
    task = await new_task(http)

    async def race(i: int, agent: str) -> tuple[int, Any]:
        if i % 2:
            return await claim_message(http, task["messageId"], agent)
        return await claim_task(http, task["id"], agent)

    answers = await asyncio.gather(*(race(i, a) for i, a in enumerate(agents)))
    winners = [body["claimedBy"] for status, body in answers if status == 200]
    assert len(winners) == 1, answers
    for status, body in answers:
        if status != 200:
            assert status == 409 and body["code"] == "already_claimed"
            assert body["claimedBy"] == winners[0]
    stored = await get_task(http, task["id"])
    status, message = await call(http, "GET", f"/api/messages/{task['messageId']}")
    assert stored["claimedBy"] == message["claimedBy"] == winners[0]
    assert (await event_types(http, task["id"])).count("claimed") == 1


# ----------------------------------------------------------------------------- status machine


def test_transition_table_is_complete_and_final_states_are_final() -> None:
    assert set(rules.TRANSITIONS) == set(rules.STATUSES)
    for status in rules.FINISHED:
        for wanted in rules.STATUSES:
            assert rules.transition_error(status, wanted) is not None
    assert rules.transition_error("open", "claimed") is not None  # only by claiming
    assert rules.transition_error("open", "in_progress") is not None
    assert rules.transition_error("open", "done") is None
    assert rules.transition_error("claimed", "in_progress") is None
    assert rules.transition_error("blocked", "in_progress") is None
    assert rules.transition_error("in_progress", "claimed") is not None


HELD_PATHS = [
    (current, wanted)
    for current in ("claimed", "in_progress", "blocked")
    for wanted in rules.STATUSES
]


@pytest.mark.parametrize(("current", "wanted"), HELD_PATHS)
async def test_every_transition_from_a_held_task(
    http: aiohttp.ClientSession, oncall: list[str], current: str, wanted: str
) -> None:
    task = await new_task(http)
    await claim_task(http, task["id"], "bob")
    if current != "claimed":
        assert (await set_status(http, task["id"], "bob", current))[0] == 200
    status, body = await set_status(http, task["id"], "bob", wanted)
    if rules.transition_error(current, wanted) is None:
        assert status == 200, body
        assert body["status"] == wanted
        assert body["claimedBy"] == (None if wanted == "open" else "bob")
    else:
        assert status == 409 and body["code"] == "invalid_state", body
        assert (await get_task(http, task["id"]))["status"] == current


async def test_status_updates(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    task = await new_task(http)
    status, body = await set_status(http, task["id"], "bob", "in_progress")
    assert status == 409 and "claim" in body["error"]
    await claim_task(http, task["id"], "bob")
    status, body = await set_status(http, task["id"], "carol", "in_progress")
    assert status == 403 and body["code"] == "forbidden"
    status, body = await set_status(http, task["id"], "bob", "in_progress", progress=40)
    assert status == 200 and body["progress"] == 40
    status, body = await set_status(
        http, task["id"], "bob", "in_progress", progress={"step": "copy", "pct": 80}
    )
    assert status == 200 and body["progress"] == {"step": "copy", "pct": 80}
    status, body = await set_status(http, task["id"], "bob", "done", result="freed 20 GB")
    assert status == 200 and body["status"] == "done" and body["result"] == "freed 20 GB"
    status, body = await set_status(http, task["id"], "bob", "in_progress")
    assert status == 409 and body["code"] == "invalid_state"
    history = await event_types(http, task["id"])
    assert history == ["created", "claimed", "status", "progress", "status"]


@pytest.mark.parametrize(
    "body",
    [
        {"status": "done"},
        {"agent": "bob"},
        {"agent": "bob", "status": "finished"},
        {"agent": "bob", "status": 3},
        {"agent": "bob", "status": "done", "result": "x" * 20000},
    ],
)
async def test_bad_status_bodies_are_400(
    http: aiohttp.ClientSession, oncall: list[str], body: dict[str, Any]
) -> None:
    task = await new_task(http)
    status, answer = await call(http, "PATCH", f"/api/tasks/{task['id']}/status", body)
    assert status == 400 and answer["code"] == "invalid_request", answer
    assert (await get_task(http, task["id"]))["status"] == "open"


async def test_open_task_can_be_cancelled_by_anyone_but_not_reopened(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    task = await new_task(http)
    status, body = await set_status(http, task["id"], "carol", "cancelled")
    assert status == 200 and body["status"] == "cancelled"
    status, body = await set_status(http, task["id"], "carol", "open")
    assert status == 409


async def test_holder_can_release_and_another_agent_claim(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    task = await new_task(http)
    await claim_task(http, task["id"], "bob")
    status, body = await set_status(http, task["id"], "bob", "open")
    assert status == 200 and body["status"] == "open" and body["claimedBy"] is None
    status, message = await call(http, "GET", f"/api/messages/{task['messageId']}")
    assert message["claimedBy"] is None
    status, body = await claim_message(http, task["messageId"], "carol")
    assert status == 200
    assert (await get_task(http, task["id"]))["claimedBy"] == "carol"


# ----------------------------------------------------------------------------- leases


async def test_silent_claim_returns_to_open_and_can_be_claimed_again(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory(
        integrations=(MONITOR,), claim_lease_ms=1000, reap_interval_ms=50
    )
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        for agent in ("bob", "carol"):
            await register(http, agent, tags=["oncall"])
        task = await new_task(http)
        await claim_task(http, task["id"], "bob")
        await asyncio.sleep(0.6)
        await set_status(http, task["id"], "bob", "in_progress")  # a report renews the lease
        await asyncio.sleep(0.6)
        assert (await get_task(http, task["id"]))["claimedBy"] == "bob"
        reopened = await _wait_for_status(http, task["id"], "open", timeout=3.0)
        assert reopened["claimedBy"] is None and reopened["claimedAt"] is None
        status, events = await call(http, "GET", f"/api/tasks/{task['id']}/events")
        expired = [e for e in events["events"] if e["type"] == "lease_expired"]
        assert len(expired) == 1 and expired[0]["data"]["previousClaimer"] == "bob"
        status, _body = await claim_message(http, task["messageId"], "carol")
        assert status == 200
        assert (await get_task(http, task["id"]))["claimedBy"] == "carol"


async def test_offline_claimer_loses_the_claim(
    http: aiohttp.ClientSession, relay: Relay, oncall: list[str]
) -> None:
    task = await new_task(http)
    await claim_task(http, task["id"], "bob")
    await set_status(http, task["id"], "bob", "blocked")
    await call(http, "PATCH", "/api/agents/bob", {"status": "offline"})
    await relay.reaper.run_once()
    stored = await get_task(http, task["id"])
    assert stored["status"] == "open" and stored["claimedBy"] is None


async def _wait_for_status(
    http: aiohttp.ClientSession, task_id: int, status: str, timeout: float
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = await get_task(http, task_id)
        if task["status"] == status or asyncio.get_running_loop().time() > deadline:
            assert task["status"] == status, task
            return task
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- SSE, stats


async def test_task_events_on_sse(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    resp = await http.get("/api/events", params={"for": "bob"})
    assert resp.status == 200
    await resp.content.readline()  # ": connected"
    task = await new_task(http)
    await claim_task(http, task["id"], "bob")
    seen: list[tuple[str, dict[str, Any]]] = []
    while len([t for t, _ in seen if t.startswith("task.")]) < 2:
        event = await asyncio.wait_for(_next_event(resp), 5)
        seen.append(event)
    task_events = [(t, d) for t, d in seen if t.startswith("task.")]
    assert task_events[0][0] == "task.created" and task_events[0][1]["id"] == task["id"]
    assert task_events[1][0] == "task.updated" and task_events[1][1]["claimedBy"] == "bob"
    resp.close()


async def _next_event(resp: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    fields: dict[str, str] = {}
    while True:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if not line:
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])
            continue
        if not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


async def test_stats_count_tasks_by_status(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    first = await new_task(http)
    await new_task(http)
    await claim_task(http, first["id"], "bob")
    _status, stats = await call(http, "GET", "/api/stats")
    assert stats["tasks"]["open"] == 1 and stats["tasks"]["claimed"] == 1
    assert stats["tasks"]["done"] == 0 and stats["tasks"]["total"] == 2


async def test_retention_keeps_messages_of_unfinished_tasks(
    http: aiohttp.ClientSession, relay: Relay, oncall: list[str]
) -> None:
    open_task = await new_task(http)
    done_task = await new_task(http)
    await set_status(http, done_task["id"], "bob", "done")
    resp = await http.post("/api/messages", json={"from": "x", "to": "bob", "body": "plain"})
    plain = await resp.json()
    await relay.ctx.store.prune_history(now_ms() + 60_000, 100_000)
    for message_id, kept in (
        (open_task["messageId"], True),
        (done_task["messageId"], False),
        (plain["id"], False),
    ):
        resp = await http.get(f"/api/messages/{message_id}")
        assert (resp.status == 200) is kept, message_id

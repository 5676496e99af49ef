"""The integration ingress, GET /integrations and GET /channels against a real relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Integration, replace
from relayd.daemon.relay import Relay
from relayd.http.ratelimit import SlidingWindowLimiter

MON_TOKEN = "mon-token-0123456789"
CI_TOKEN = "ci-token-0123456789"
READER_TOKEN = "reader-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"

MONITOR = Integration(
    name="monitor",
    token=MON_TOKEN,
    scopes=frozenset({"tasks:create"}),
    targets=("tag:oncall", "tag:ops-*", "alice"),
    channels=("alerts",),
    callback_url="http://127.0.0.1:9/hook?key=s3cret",
    callback_secret="callback-secret",
)
CI = Integration(name="ci", token=CI_TOKEN, scopes=frozenset({"events:create", "tasks:read"}))
READER = Integration(name="reader", token=READER_TOKEN, scopes=frozenset({"messages:write"}))
INTEGRATIONS = (MONITOR, CI, READER)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_TOKEN)
MON = auth(MON_TOKEN)


@pytest.fixture
async def relay(relay_factory: Callable[..., Any]) -> Relay:
    started: Relay = await relay_factory(integrations=INTEGRATIONS, token=ADMIN_TOKEN)
    return started


@pytest.fixture
async def http(relay: Relay) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        yield session


async def register(http: aiohttp.ClientSession, agent_id: str, **fields: Any) -> None:
    resp = await http.post("/api/agents", json={"id": agent_id, **fields}, headers=ADMIN)
    assert resp.status in (200, 201), await resp.text()


async def post_event(
    http: aiohttp.ClientSession,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, Any]:
    event = {"type": "alert", "title": "disk full", "target": "tag:oncall", **fields}
    resp = await http.post("/api/integrations/events", json=event, headers=headers or MON)
    return resp.status, await resp.json()


async def tasks(http: aiohttp.ClientSession, **params: str) -> list[dict[str, Any]]:
    resp = await http.get("/api/tasks", params=params, headers=ADMIN)
    assert resp.status == 200
    return list((await resp.json())["tasks"])


async def inbox(http: aiohttp.ClientSession, agent: str) -> list[dict[str, Any]]:
    resp = await http.get("/api/messages", params={"for": agent}, headers=ADMIN)
    return list((await resp.json())["messages"])


async def task_events(http: aiohttp.ClientSession, task_id: int) -> list[dict[str, Any]]:
    resp = await http.get(f"/api/tasks/{task_id}/events", headers=ADMIN)
    assert resp.status == 200
    return list((await resp.json())["events"])


@pytest.fixture
async def oncall(http: aiohttp.ClientSession) -> list[str]:
    for agent in ("bob", "carol"):
        await register(http, agent, tags=["oncall"])
    return ["bob", "carol"]


async def test_event_creates_task_and_claimable_message(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    status, body = await post_event(
        http, body="/var is 99% full", severity="critical", dedupeKey="disk:/var",
        channel="alerts", meta={"host": "db1"},
    )
    assert status == 201, body
    assert body["deduped"] is False
    task = body["task"]
    assert task["source"] == "monitor" and task["status"] == "open"
    assert task["occurrenceCount"] == 1 and task["claimedBy"] is None
    assert task["severity"] == "critical" and task["dedupeKey"] == "disk:/var"
    assert task["meta"] == {"host": "db1"} and task["channel"] == "alerts"
    assert task["createdAt"].endswith("Z") and task["firstSeenAt"] == task["lastSeenAt"]
    for agent in oncall:
        messages = await inbox(http, agent)
        assert len(messages) == 1
        message = messages[0]
        assert message["id"] == task["messageId"] and message["from"] == "monitor"
        assert message["claimable"] is True and message["body"] == "/var is 99% full"
        assert message["meta"]["taskId"] == task["id"]
    fetched = await (await http.get(f"/api/tasks/{task['id']}", headers=ADMIN)).json()
    assert fetched == task
    assert [e["type"] for e in await task_events(http, task["id"])] == ["created"]


async def test_dedupe_counts_occurrences_without_new_messages(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    first = await post_event(http, dedupeKey="cpu")
    second = await post_event(http, dedupeKey="cpu", title="cpu still high")
    assert first[0] == 201 and second[0] == 200
    assert second[1]["deduped"] is True
    assert second[1]["task"]["id"] == first[1]["task"]["id"]
    assert second[1]["task"]["occurrenceCount"] == 2
    assert second[1]["task"]["lastSeenAt"] >= first[1]["task"]["lastSeenAt"]
    assert len(await inbox(http, "bob")) == 1
    history = await task_events(http, first[1]["task"]["id"])
    assert [e["type"] for e in history] == ["created", "occurrence"]
    assert history[1]["actor"] == "monitor" and history[1]["data"]["occurrenceCount"] == 2
    other_key = await post_event(http, dedupeKey="memory")
    no_key = await post_event(http)
    assert other_key[0] == 201 and no_key[0] == 201
    assert len(await tasks(http)) == 3


async def test_dedupe_is_exact_under_concurrency(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    answers = await asyncio.gather(*(post_event(http, dedupeKey="flap") for _ in range(20)))
    assert sorted(status for status, _ in answers) == [200] * 19 + [201]
    ids = {body["task"]["id"] for _, body in answers}
    assert len(ids) == 1
    stored = await tasks(http)
    assert len(stored) == 1 and stored[0]["occurrenceCount"] == 20
    for agent in oncall:
        claimable = [m for m in await inbox(http, agent) if m["claimable"]]
        assert len(claimable) == 1
    history = await task_events(http, stored[0]["id"])
    assert [e["type"] for e in history] == ["created"] + ["occurrence"] * 19


async def test_resolve_closes_the_active_task(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    created = (await post_event(http, dedupeKey="db-down"))[1]["task"]
    status, body = await post_event(http, dedupeKey="db-down", status="resolved")
    assert status == 200, body
    assert body["task"]["id"] == created["id"] and body["task"]["status"] == "done"
    assert body["deduped"] is False
    again = await post_event(http, dedupeKey="db-down", status="resolved")
    assert again[0] == 404 and again[1]["code"] == "not_found"
    unknown = await post_event(http, dedupeKey="never-seen", status="resolved")
    assert unknown[0] == 404
    reopened = await post_event(http, dedupeKey="db-down")
    assert reopened[0] == 201 and reopened[1]["task"]["id"] != created["id"]
    history = await task_events(http, created["id"])
    assert [e["type"] for e in history] == ["created", "resolved"]
    claim = await http.post(
        f"/api/messages/{created['messageId']}/claim", json={"agent": "bob"}, headers=ADMIN
    )
    assert claim.status == 409 and (await claim.json())["code"] == "invalid_state"


async def test_resolve_needs_only_type_and_dedupe_key(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    await post_event(http, dedupeKey="k1")
    resp = await http.post(
        "/api/integrations/events",
        json={"type": "alert", "dedupeKey": "k1", "status": "resolved"},
        headers=MON,
    )
    assert resp.status == 200
    resp = await http.post(
        "/api/integrations/events", json={"type": "alert", "status": "resolved"}, headers=MON
    )
    assert resp.status == 400 and "dedupeKey" in (await resp.json())["error"]


async def test_scopes_and_tokens(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    wrong_scope = await post_event(http, headers=auth(READER_TOKEN))
    assert wrong_scope[0] == 403 and wrong_scope[1]["code"] == "forbidden"
    unknown = await post_event(http, headers=auth("not-a-configured-token"))
    assert unknown[0] == 401 and unknown[1]["code"] == "unauthorized"
    resp = await http.post("/api/integrations/events", json={"type": "x"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await http.get("/api/tasks", headers=MON)
    assert resp.status == 403
    resp = await http.get("/api/tasks", headers=auth(CI_TOKEN))
    assert resp.status == 200
    legacy = await post_event(http, headers=auth(CI_TOKEN))
    assert legacy[0] == 201 and legacy[1]["task"]["source"] == "ci"
    assert len(await tasks(http)) == 1


async def test_allowlists(http: aiohttp.ClientSession, oncall: list[str]) -> None:
    await register(http, "dave", tags=["ops-db"])
    outside = await post_event(http, target="tag:dev")
    assert outside[0] == 403 and outside[1]["code"] == "forbidden"
    broadcast = await post_event(http, target="broadcast")
    assert broadcast[0] == 403
    channel = await post_event(http, channel="general")
    assert channel[0] == 403 and "channel" in channel[1]["error"]
    impostor = await post_event(http, source="ci")
    assert impostor[0] == 403
    assert await tasks(http) == []
    assert await inbox(http, "bob") == []
    pattern = await post_event(http, target="tag:ops-db", channel="alerts")
    assert pattern[0] == 201
    direct = await post_event(http, target="alice")
    assert direct[0] == 404  # allowed, but no such agent: nothing stored
    assert len(await tasks(http)) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "t", "target": "tag:oncall"}, "type"),
        ({"type": "a", "target": "tag:oncall"}, "title"),
        ({"type": "a", "title": "t"}, "target"),
        ({"type": 5, "title": "t", "target": "tag:oncall"}, "type"),
        ({"type": "a", "title": "", "target": "tag:oncall"}, "title"),
        ({"type": "a", "title": "t", "target": "tag:"}, "target"),
        ({"type": "a", "title": "t", "target": "bad id!"}, "target"),
        ({"type": "a", "title": "t", "target": "tag:oncall", "meta": [1]}, "meta"),
        ({"type": "a", "title": "t", "target": "tag:oncall", "dedupeKey": 7}, "dedupeKey"),
        ({"type": "a", "title": "t", "target": "tag:oncall", "severity": {}}, "severity"),
        ({"type": "a", "title": "t", "target": "tag:oncall", "body": "x\u0000"}, "body"),
        ({"type": "a", "title": "t" * 2000, "target": "tag:oncall"}, "title"),
    ],
)
async def test_malformed_events_are_400(
    http: aiohttp.ClientSession, payload: dict[str, Any], field: str
) -> None:
    resp = await http.post("/api/integrations/events", json=payload, headers=MON)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["code"] == "invalid_request" and field in body["error"]
    assert await tasks(http) == []


async def test_not_json_is_400(http: aiohttp.ClientSession) -> None:
    for raw in (b"{nope", b"[1, 2]", b"\xff"):
        resp = await http.post("/api/integrations/events", data=raw,
                               headers={**MON, "Content-Type": "application/json"})
        assert resp.status == 400 and (await resp.json())["code"] == "invalid_json"


async def test_idempotency_key_replays_the_first_answer(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    headers = {**MON, "Idempotency-Key": "evt-1"}
    first = await post_event(http, headers=headers, dedupeKey="k")
    second = await post_event(http, headers=headers, dedupeKey="k")
    assert first[0] == 201 and second[0] == 200
    assert second[1]["task"]["id"] == first[1]["task"]["id"]
    assert second[1]["task"]["occurrenceCount"] == 1 and second[1]["replayed"] is True
    assert second[1]["deduped"] is False
    occurrence = await post_event(http, headers={**MON, "Idempotency-Key": "evt-2"},
                                  dedupeKey="k")
    replay = await post_event(http, headers={**MON, "Idempotency-Key": "evt-2"}, dedupeKey="k")
    assert occurrence[1]["deduped"] is True and replay[1]["deduped"] is True
    assert replay[1]["task"]["occurrenceCount"] == 2
    assert len(await inbox(http, "bob")) == 1
    too_long = await post_event(http, headers={**MON, "Idempotency-Key": "x" * 129})
    assert too_long[0] == 400


async def test_rate_limit_per_integration(
    relay_factory: Callable[..., Any], tmp_path: Any
) -> None:
    relay: Relay = await relay_factory(
        integrations=INTEGRATIONS, integration_rate_limit_per_minute=3
    )
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "bob", tags=["oncall"])
        answers = [await post_event(http) for _ in range(3)]
        assert [status for status, _ in answers] == [201] * 3
        resp = await http.post(
            "/api/integrations/events",
            json={"type": "a", "title": "t", "target": "tag:oncall"},
            headers=MON,
        )
        assert resp.status == 429
        assert (await resp.json())["code"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert len(await tasks(http)) == 3
        other = await post_event(http, headers=auth(CI_TOKEN))
        assert other[0] == 201
        admin = await post_event(http, headers={"Accept": "application/json"})  # no token
        assert admin[0] == 201 and admin[1]["task"]["source"] == "admin"


async def test_admin_may_post_as_a_source(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    status, body = await post_event(http, headers=ADMIN, target="tag:dev")
    assert status == 201 and body["task"]["source"] == "admin"
    status, body = await post_event(http, headers=ADMIN, source="replay-tool")
    assert status == 201 and body["task"]["source"] == "replay-tool"


async def test_list_integrations_never_shows_tokens(
    http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    await post_event(http, dedupeKey="a")
    await post_event(http, dedupeKey="a")
    await post_event(http, headers=ADMIN, source="replay-tool")
    resp = await http.get("/api/integrations", headers=ADMIN)
    assert resp.status == 200
    text = await resp.text()
    for secret in (MON_TOKEN, CI_TOKEN, READER_TOKEN, "callback-secret", "s3cret"):
        assert secret not in text
    entries = {e["name"]: e for e in (await resp.json())["integrations"]}
    assert set(entries) == {"monitor", "ci", "reader", "replay-tool"}
    monitor = entries["monitor"]
    assert monitor["configured"] is True and monitor["scopes"] == ["tasks:create"]
    assert monitor["observed"]["events"] == 2 and monitor["observed"]["occurrences"] == 1
    assert monitor["callback"]["url"] == "http://127.0.0.1:9/hook"
    assert monitor["callback"]["signed"] is True
    assert entries["replay-tool"]["configured"] is False
    assert entries["ci"]["observed"]["events"] == 0
    resp = await http.get("/api/integrations", headers=MON)
    assert resp.status == 403


async def test_channels(http: aiohttp.ClientSession) -> None:
    await register(http, "bob", channels=["alerts", "builds"])
    await register(http, "eve")
    resp = await http.post(
        "/api/messages",
        json={"from": "x", "to": "broadcast", "body": "hi", "channel": "alerts"},
        headers=ADMIN,
    )
    assert resp.status == 201
    resp = await http.get("/api/channels", headers=ADMIN)
    assert resp.status == 200
    channels = (await resp.json())["channels"]
    assert channels[0]["name"] == "telegram"
    assert channels[0]["configured"] is False and channels[0]["state"] == "not configured"
    used = {c["name"]: c for c in channels if c["kind"] == "message"}
    assert used["alerts"]["messages"] == 1 and used["alerts"]["subscribers"] == 1
    assert used["builds"]["messages"] == 0 and used["builds"]["state"] == "subscribed"
    resp = await http.get("/api/channels", headers=MON)
    assert resp.status == 403


async def test_integrations_reload_without_restart(
    relay: Relay, http: aiohttp.ClientSession, oncall: list[str]
) -> None:
    fresh = Integration(name="pager", token="pager-token-0123456789",
                        scopes=frozenset({"tasks:write"}), targets=("tag:oncall",))
    relay.apply_settings(replace(relay.settings, integrations=(fresh,)))
    status, body = await post_event(http, headers=auth("pager-token-0123456789"))
    assert status == 201 and body["task"]["source"] == "pager"
    status, body = await post_event(http)  # the monitor token is gone
    assert status == 401


def test_sliding_window_limiter() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    assert [limiter.admit("a", 2) for _ in range(2)] == [None, None]
    assert limiter.admit("a", 2) == pytest.approx(60.0)
    assert limiter.admit("b", 2) is None  # per integration
    now[0] += 30
    assert limiter.admit("a", 2) == pytest.approx(30.0)
    now[0] += 30.5
    assert limiter.admit("a", 2) is None  # the first two left the window
    assert limiter.admit("a", 2) is None
    assert limiter.admit("a", 2) == pytest.approx(60.0)

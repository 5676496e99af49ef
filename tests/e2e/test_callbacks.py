"""Callbacks end to end: a real aiohttp receiver on loopback, a real relay, real retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relayd.config.settings import Integration
from relayd.daemon.callbacks import CallbackWorker, backoff_seconds, sign
from relayd.daemon.relay import Relay
from tests.helpers import RelaydProcess

TOKEN = "monitor-token-0123456789"
SECRET = "shared-callback-secret"
MON = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event(self) -> str:
        return self.headers["X-Agent-Relay-Event"]

    @property
    def delivery(self) -> str:
        return self.headers["X-Agent-Relay-Delivery"]


class Receiver:
    """The integration's endpoint: records every request, answers from a plan (default 200)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.called = asyncio.Event()  # set on each request
        self.plan: list[int | str] = []  # a status per request, or "hang"
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.plan.pop(0) if self.plan else 200
        if answer == "hang":
            self.calls.append(Call(dict(request.headers), body, 0))
            self.called.set()
            await asyncio.sleep(30)
            answer = 200
        assert isinstance(answer, int)
        self.calls.append(Call(dict(request.headers), body, answer))
        self.called.set()
        return web.Response(status=answer)

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Call]:
        return [c for c in self.calls if 200 <= c.status < 300]

    async def wait_delivered(self, count: int, timeout: float = 10.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count:
            assert time.monotonic() < deadline, [(c.event, c.status) for c in self.calls]
            await asyncio.sleep(0.02)
        return self.delivered()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


def monitor(url: str, secret: str | None = SECRET) -> Integration:
    return Integration(
        name="monitor",
        token=TOKEN,
        scopes=frozenset({"tasks:create"}),
        callback_url=url,
        callback_secret=secret,
    )


async def start_relay(
    relay_factory: Callable[..., Any], url: str, **settings: Any
) -> tuple[Relay, CallbackWorker]:
    relay: Relay = await relay_factory(integrations=(monitor(url),), **settings)
    worker: CallbackWorker = relay.callbacks
    worker.base_delay = 0.05  # retries in tens of milliseconds, not seconds
    return relay, worker


async def post(http: aiohttp.ClientSession, method: str, path: str, **body: Any) -> Any:
    headers = MON if path.startswith("/api/integrations/events") else None
    resp = await http.request(method, path, json=body, headers=headers)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def setup_agents(http: aiohttp.ClientSession) -> None:
    for agent in ("bob", "carol"):
        await post(http, "POST", "/api/agents", id=agent, tags=["oncall"])


async def new_task(http: aiohttp.ClientSession, key: str = "disk") -> dict[str, Any]:
    answer = await post(
        http, "POST", "/api/integrations/events",
        type="alert", title="disk full", target="tag:oncall", dedupeKey=key,
    )
    return dict(answer["task"])


def verify(secret: str, call: Call) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), call.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, call.headers.get("X-Agent-Relay-Signature", ""))


async def test_lifecycle_callbacks_signed_and_in_order(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    relay, _ = await start_relay(relay_factory, receiver.url)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        task = await new_task(http)
        await new_task(http)  # an occurrence
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        await post(http, "PATCH", f"/api/tasks/{task['id']}/status", agent="bob",
                   status="in_progress", progress=10)
        await post(http, "PATCH", f"/api/tasks/{task['id']}/status", agent="bob",
                   status="done", result="ok")
        calls = await receiver.wait_delivered(5)
    assert [c.event for c in calls] == [
        "task.created", "task.occurrence", "task.claimed", "task.status_changed",
        "task.status_changed",
    ]
    assert [c.json["task"]["status"] for c in calls] == [
        "open", "open", "claimed", "in_progress", "done",
    ]
    assert [c.json["task"]["occurrenceCount"] for c in calls][:2] == [1, 2]
    assert len({c.delivery for c in calls}) == 5
    for call in calls:
        assert verify(SECRET, call), call.headers
        assert not verify("another-secret", call)
        assert call.json["event"] == call.event
        assert call.json["task"]["id"] == task["id"] and call.json["at"].endswith("Z")
        assert call.headers["Content-Type"] == "application/json"
        assert call.headers["X-Agent-Relay-Attempt"] == "1"


async def test_resolve_and_no_signature_without_secret(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    relay: Relay = await relay_factory(integrations=(monitor(receiver.url, secret=None),))
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        await new_task(http)
        await post(http, "POST", "/api/integrations/events", type="alert", dedupeKey="disk",
                   status="resolved")
        calls = await receiver.wait_delivered(2)
    assert [c.event for c in calls] == ["task.created", "task.resolved"]
    assert calls[1].json["task"]["status"] == "done"
    assert all("X-Agent-Relay-Signature" not in c.headers for c in calls)


async def test_retries_after_500_keep_the_delivery_id_and_the_order(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    receiver.plan = [500, 503]
    relay, _ = await start_relay(relay_factory, receiver.url)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        task = await new_task(http)
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        await receiver.wait_delivered(2)
    attempts = [(c.event, c.status, c.headers["X-Agent-Relay-Attempt"]) for c in receiver.calls]
    assert attempts == [
        ("task.created", 500, "1"),
        ("task.created", 503, "2"),
        ("task.created", 200, "3"),
        ("task.claimed", 200, "1"),
    ]
    assert len({c.delivery for c in receiver.calls[:3]}) == 1
    assert receiver.calls[0].body == receiver.calls[2].body  # the signed bytes never change


async def test_dead_after_max_attempts_is_visible_and_the_queue_moves_on(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    receiver.plan = [500, 500]
    relay, _ = await start_relay(relay_factory, receiver.url, callback_max_attempts=2)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        task = await new_task(http)
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        calls = await receiver.wait_delivered(1)
        assert [c.event for c in calls] == ["task.claimed"]
        assert [c.status for c in receiver.calls] == [500, 500, 200]
        history = (await post(http, "GET", f"/api/tasks/{task['id']}/events"))["events"]
        dead = [e for e in history if e["type"] == "callback_dead"]
        assert len(dead) == 1
        assert dead[0]["data"]["event"] == "task.created" and dead[0]["data"]["attempts"] == 2
        assert dead[0]["data"]["deliveryId"] == receiver.calls[0].delivery
        listing = (await post(http, "GET", "/api/integrations"))["integrations"]
        callback = listing[0]["callback"]
        assert callback["dead"] == 1 and callback["delivered"] == 1 and callback["pending"] == 0
        assert callback["deadDeliveries"][0]["taskId"] == task["id"]
        assert "500" in callback["deadDeliveries"][0]["lastError"]


async def test_lease_expiry_and_release_are_called_back(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    relay, _ = await start_relay(
        relay_factory, receiver.url, claim_lease_ms=1000, reap_interval_ms=50
    )
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        task = await new_task(http)
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        calls = await receiver.wait_delivered(3, timeout=5)
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="carol")
        await post(http, "PATCH", f"/api/tasks/{task['id']}/status", agent="carol",
                   status="open")
        calls = await receiver.wait_delivered(5)
    assert [c.event for c in calls] == [
        "task.created", "task.claimed", "task.lease_expired", "task.claimed", "task.released",
    ]
    expired = calls[2].json["task"]
    assert expired["status"] == "open" and expired["claimedBy"] is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_refused_connections_are_retried_and_the_api_stays_fast(
    relay_factory: Callable[..., Any],
) -> None:
    port = free_port()
    relay, worker = await start_relay(relay_factory, f"http://127.0.0.1:{port}/hook")
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        await new_task(http)
        deadline = time.monotonic() + 5
        while worker.attempts < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        started = time.monotonic()
        for i in range(20):
            await new_task(http, key=f"k{i}")
        assert time.monotonic() - started < 2.0
        receiver = await Receiver().start(port)
        try:
            calls = await receiver.wait_delivered(21)
        finally:
            await receiver.stop()
    assert sorted(c.event for c in calls) == ["task.created"] * 21
    listing = (await post_plain(relay, "/api/integrations"))["integrations"]
    assert listing[0]["callback"]["failedAttempts"] >= 3


async def post_plain(relay: Relay, path: str) -> Any:
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        return await (await http.get(path)).json()


async def test_a_hanging_endpoint_times_out_is_retried_and_never_blocks_the_api(
    relay_factory: Callable[..., Any], receiver: Receiver
) -> None:
    receiver.plan = ["hang"]
    relay, worker = await start_relay(relay_factory, receiver.url)
    worker.timeout = 0.3
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await setup_agents(http)
        task = await new_task(http)
        await receiver.called.wait()
        started = time.monotonic()
        await post(http, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        other = await new_task(http, key="other")
        assert time.monotonic() - started < 0.25  # answered while the callback hangs
        calls = await receiver.wait_delivered(3)
    by_task = [(c.json["task"]["id"], c.event) for c in calls]
    mine = [event for task_id, event in by_task if task_id == task["id"]]
    assert mine == ["task.created", "task.claimed"]
    assert (other["id"], "task.created") in by_task
    first_created = next(c for c in calls if c.json["task"]["id"] == task["id"])
    assert receiver.calls[0].delivery == first_created.delivery  # the same delivery, retried


async def test_pending_deliveries_survive_kill_9(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    port = free_port()
    env = {
        "AGENT_RELAY_INTEGRATIONS": json.dumps([{
            "name": "monitor", "token": TOKEN, "scopes": ["tasks:create"],
            "callbackUrl": f"http://127.0.0.1:{port}/hook", "callbackSecret": SECRET,
        }]),
    }
    first = relayd_process(env=env)
    async with aiohttp.ClientSession(base_url=first.url) as http:
        await setup_agents(http)
        created = [await new_task(http, key=f"k{i}") for i in range(3)]
        deadline = time.monotonic() + 10
        while True:  # wait until the relay has tried (and failed) at least once
            listing = await (await http.get("/api/integrations")).json()
            if listing["integrations"][0]["callback"]["failedAttempts"] >= 1:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: no shutdown path runs
    first.wait(10)
    receiver = await Receiver().start(port)
    try:
        second = relayd_process(env=env)
        calls = await receiver.wait_delivered(3, timeout=15)
        await second_has_nothing_pending(second)
    finally:
        await receiver.stop()
    assert sorted(c.json["task"]["id"] for c in calls) == sorted(t["id"] for t in created)
    assert all(verify(SECRET, c) for c in calls)


async def second_has_nothing_pending(process: RelaydProcess) -> None:
    async with aiohttp.ClientSession(base_url=process.url) as http:
        deadline = time.monotonic() + 5
        while True:
            listing = await (await http.get("/api/integrations")).json()
            callback = listing["integrations"][0]["callback"]
            if callback["pending"] == 0:
                assert callback["delivered"] == 3 and callback["dead"] == 0
                return
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (5, 16.0), (30, 300.0)):
        delays = [backoff_seconds(attempts, 1.0, 300.0) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed delay


def test_signature_is_hmac_sha256_of_the_body() -> None:
    # Known answer from RFC 4231 test case 2.
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign("Jefe", b"what do ya want for nothing?") == f"sha256={expected}"

"""GET /metrics and /api/metrics: Prometheus text that counts what happened, behind the API's
auth (scope stats:read)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay
from tests.api.test_sse import sse
from tests.helpers import register

ADMIN = {"Authorization": "Bearer metrics-admin-token"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(http: aiohttp.ClientSession, path: str = "/metrics",
                 headers: dict[str, str] | None = None) -> dict[Any, float]:
    resp = await http.get(path, headers=headers or ADMIN)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(await resp.text())


async def published(relay: Relay, messages: int, claims: int) -> None:
    """Wait for the bus to have the committed events (PostgreSQL publishes them from its event
    tail, a moment after the write answers)."""
    deadline = time.monotonic() + 10
    metrics = relay.ctx.metrics
    while metrics.messages_sent < messages or metrics.claims < claims:
        assert time.monotonic() < deadline, "the committed events never reached the bus"
        await asyncio.sleep(0.02)


async def test_counts_requests_messages_claims_streams_and_commits(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory(token="metrics-admin-token")
    async with aiohttp.ClientSession(base_url=relay.url, headers=ADMIN) as http:
        for agent in ("bob", "carol", "dave"):
            await register(http, agent, tags=["crew"])
        direct = await http.post("/api/messages", json={"from": "ci", "to": "bob", "body": "a"})
        assert direct.status == 201
        job = await (await http.post("/api/messages", json={
            "from": "ci", "to": "tag:crew", "body": "job", "claimable": True})).json()
        for agent in ("carol", "dave"):
            await http.post(f"/api/messages/{job['id']}/claim", json={"agent": agent})
        missing = await http.post("/api/messages", json={"from": "ci", "to": "nobody",
                                                          "body": "x"})
        assert missing.status == 404
        await http.get("/no/such/path")
        await published(relay, messages=2, claims=1)
        async with sse(http):
            got = await scrape(http)
            assert got[("relay_sse_connections", ())] == 1
        again = await scrape(http, "/api/metrics")
    assert got[("relay_messages_sent_total", ())] == 2
    assert got[("relay_messages_delivered_total", ())] == 4  # bob, then the crew of three
    assert got[("relay_claims_total", ())] == 1
    sends = (("method", "POST"), ("route", "/api/messages"))
    assert got[("relay_http_requests_total", (*sends, ("status", "201")))] == 2
    assert got[("relay_http_requests_total", (("method", "POST"), ("route", "/api/messages"),
                                              ("status", "404")))] == 1
    claims = (("method", "POST"), ("route", "/api/messages/{id}/claim"))
    assert got[("relay_http_requests_total", (*claims, ("status", "200")))] == 1
    assert got[("relay_http_requests_total", (*claims, ("status", "409")))] == 1
    assert got[("relay_http_requests_total", (("method", "GET"), ("route", "unmatched"),
                                              ("status", "404")))] == 1
    assert got[("relay_http_request_duration_seconds_count", sends)] == 3
    assert got[("relay_http_request_duration_seconds_bucket", (("le", "+Inf"), *sends))] == 3
    assert ("relay_http_request_duration_seconds_count",
            (("method", "GET"), ("route", "/api/events"))) not in got  # streams are not timed
    commits = got[("relay_commit_batch_size_count", ())]
    assert commits >= 1 and got[("relay_commit_batch_size_sum", ())] >= commits
    assert again[("relay_http_requests_total", (("method", "GET"), ("route", "/metrics"),
                                                ("status", "200")))] == 1


async def test_needs_stats_read_on_both_paths(relay_factory: Callable[..., Any]) -> None:
    integrations = (
        Integration(name="prom", token="prom-token-0123", scopes=frozenset({"stats:read"})),
        Integration(name="ci", token="ci-token-0123", scopes=frozenset({"messages:write"})),
    )
    relay: Relay = await relay_factory(token="metrics-admin-token", integrations=integrations)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        for path in ("/metrics", "/api/metrics"):
            assert (await http.get(path)).status == 401
            ci = await http.get(path, headers={"X-Agent-Relay-Token": "ci-token-0123"})
            assert ci.status == 403 and (await ci.json())["code"] == "forbidden"
            await scrape(http, path, {"Authorization": "Bearer prom-token-0123"})


async def test_counts_callback_deliveries_and_failures(
    relay_factory: Callable[..., Any],
) -> None:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    integrations = (
        Integration(name="good", token="good-token-0123", scopes=frozenset({"tasks:create"}),
                    callback_url=f"http://127.0.0.1:{port}/hook"),
        Integration(name="down", token="down-token-0123", scopes=frozenset({"tasks:create"}),
                    callback_url="http://127.0.0.1:9/hook"),
    )
    try:
        relay: Relay = await relay_factory(token="metrics-admin-token", integrations=integrations)
        async with aiohttp.ClientSession(base_url=relay.url) as http:
            for token in ("good-token-0123", "down-token-0123"):
                resp = await http.post("/api/integrations/events", headers={
                    "Authorization": f"Bearer {token}"}, json={
                    "type": "alert", "title": "disk full", "target": "broadcast"})
                assert resp.status == 201, await resp.text()
            deadline = time.monotonic() + 10
            while True:
                got = await scrape(http)
                delivered = got[("relay_callback_deliveries_total", (("outcome", "delivered"),))]
                failed = got[("relay_callback_deliveries_total", (("outcome", "failed"),))]
                if (delivered >= 1 and failed >= 1) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert delivered >= 1 and failed >= 1 and received
        assert got[("relay_callback_deliveries_total", (("outcome", "dead"),))] == 0
    finally:
        await runner.cleanup()

"""Retention of tasks: finished ones older than the window go with their history and callbacks.

Callbacks go to real aiohttp receivers on loopback: one answers 200 (delivered), one 500
(dead, as the relay allows one attempt), one never answers (the delivery stays pending).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay
from relayd.domain.models import now_ms
from relayd.storage.sql_store import SqlStore
from relayd.storage.sqlite_tx import Tx

KEEP_EVENTS = 100_000


class Receiver:
    """A callback endpoint that answers every request with `answer`, or never if None."""

    def __init__(self, answer: int | None) -> None:
        self.answer = answer
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.answer is None:
            await asyncio.Event().wait()
        return web.Response(status=self.answer or 200)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self


@pytest.fixture
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    started = {
        name: await Receiver(answer).start()
        for name, answer in (("ok", 200), ("failing", 500), ("silent", None))
    }
    yield started
    for receiver in started.values():
        assert receiver.runner is not None
        await receiver.runner.cleanup()


def integration(name: str, url: str) -> Integration:
    return Integration(
        name=name, token=f"{name}-token-0123456789", scopes=frozenset({"tasks:create"}),
        callback_url=url,
    )


@pytest.fixture
async def relay(
    relay_factory: Callable[..., Any], receivers: dict[str, Receiver]
) -> Relay:
    integrations = tuple(integration(name, r.url) for name, r in receivers.items())
    started: Relay = await relay_factory(integrations=integrations, callback_max_attempts=1)
    return started


@pytest.fixture
async def http(relay: Relay) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        resp = await session.post("/api/agents", json={"id": "bob", "tags": ["oncall"]})
        assert resp.status == 201, await resp.text()
        yield session


async def ingest(
    http: aiohttp.ClientSession, source: str, key: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    event = {"type": "alert", "title": f"{key} alarm", "target": "tag:oncall",
             "dedupeKey": key, **fields}
    headers = {"Authorization": f"Bearer {source}-token-0123456789"}
    resp = await http.post("/api/integrations/events", json=event, headers=headers)
    assert resp.status in (200, 201), await resp.text()
    task: dict[str, Any] = (await resp.json())["task"]
    return resp.status, task


async def new_task(http: aiohttp.ClientSession, source: str, key: str) -> dict[str, Any]:
    status, task = await ingest(http, source, key)
    assert status == 201
    return task


async def move(http: aiohttp.ClientSession, task_id: int, *statuses: str) -> None:
    resp = await http.post(f"/api/tasks/{task_id}/claim", json={"agent": "bob"})
    assert resp.status == 200, await resp.text()
    for status in statuses:
        body = {"agent": "bob", "status": status}
        resp = await http.patch(f"/api/tasks/{task_id}/status", json=body)
        assert resp.status == 200, await resp.text()


async def outbox(relay: Relay, task_id: int) -> list[str]:
    def statuses(tx: Tx) -> list[str]:
        rows = tx.all("SELECT status FROM callback_outbox WHERE task_id = ? ORDER BY id",
                      (task_id,))
        return [row[0] for row in rows]

    assert isinstance(relay.ctx.store, SqlStore)  # the outbox is read with SQL
    found: list[str] = await relay.ctx.store.run_read(statuses)
    return found


async def settled(relay: Relay, task_id: int, count: int, timeout: float = 10.0) -> list[str]:
    """The task's callbacks once `count` of them exist and none is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await outbox(relay, task_id)
        if len(rows) >= count and "pending" not in rows:
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.02)


async def exists(http: aiohttp.ClientSession, path: str) -> bool:
    resp = await http.get(path)
    assert resp.status in (200, 404), await resp.text()
    return resp.status == 200


async def prune_all_old(relay: Relay) -> dict[str, int]:
    """Retention as if every row so far were older than the window."""
    result: dict[str, int] = await relay.ctx.store.prune_history(now_ms() + 1000, KEEP_EVENTS)
    return result


async def test_finished_tasks_go_with_events_callbacks_and_message(
    http: aiohttp.ClientSession, relay: Relay
) -> None:
    resolved = await new_task(http, "ok", "disk")
    await ingest(http, "ok", "disk", status="resolved")
    failed = await new_task(http, "failing", "cpu")
    await move(http, failed["id"], "failed")
    assert await settled(relay, resolved["id"], 2) == ["delivered", "delivered"]
    assert set(await settled(relay, failed["id"], 3)) == {"dead"}

    recent = await relay.reaper.run_once(force_history=True)
    history = recent["history"]
    assert isinstance(history, dict) and history["tasks"] == 0, "updated within the window"
    assert await exists(http, f"/api/tasks/{resolved['id']}")

    assert (await prune_all_old(relay))["tasks"] == 2
    for task in (resolved, failed):
        assert not await exists(http, f"/api/tasks/{task['id']}")
        assert not await exists(http, f"/api/tasks/{task['id']}/events")
        assert not await exists(http, f"/api/messages/{task['messageId']}")
        assert await outbox(relay, task["id"]) == []
    stats = await (await http.get("/api/stats")).json()
    assert stats["tasks"]["total"] == 0 and stats["messages"]["total"] == 0


async def test_unfinished_tasks_and_their_messages_are_kept_whatever_their_age(
    http: aiohttp.ClientSession, relay: Relay
) -> None:
    kept = {status: await new_task(http, "ok", status) for status in
            ("open", "claimed", "in_progress", "blocked")}
    await move(http, kept["claimed"]["id"])
    await move(http, kept["in_progress"]["id"], "in_progress")
    await move(http, kept["blocked"]["id"], "in_progress", "blocked")
    done = await new_task(http, "ok", "done")
    await move(http, done["id"], "done")
    await settled(relay, done["id"], 3)

    result = await prune_all_old(relay)
    assert (result["tasks"], result["messages"]) == (1, 1)
    for status, task in kept.items():
        resp = await http.get(f"/api/tasks/{task['id']}")
        assert resp.status == 200 and (await resp.json())["status"] == status
        assert await exists(http, f"/api/tasks/{task['id']}/events")
        assert await exists(http, f"/api/messages/{task['messageId']}")
    assert not await exists(http, f"/api/tasks/{done['id']}")


async def test_a_finished_task_waits_for_its_pending_callback(
    http: aiohttp.ClientSession, relay: Relay
) -> None:
    task = await new_task(http, "silent", "queue")
    await move(http, task["id"], "cancelled")
    assert "pending" in await outbox(relay, task["id"])

    result = await prune_all_old(relay)
    assert result["tasks"] == 0
    assert await exists(http, f"/api/tasks/{task['id']}")
    assert await exists(http, f"/api/tasks/{task['id']}/events")
    # the message of a finished task follows plain message retention, as before
    assert not await exists(http, f"/api/messages/{task['messageId']}")
    assert len(await outbox(relay, task["id"])) == 3


async def test_the_same_dedupe_key_makes_a_new_task_after_pruning(
    http: aiohttp.ClientSession, relay: Relay
) -> None:
    first = await new_task(http, "ok", "disk")
    await ingest(http, "ok", "disk", status="resolved")
    await settled(relay, first["id"], 2)
    assert (await prune_all_old(relay))["tasks"] == 1

    status, again = await ingest(http, "ok", "disk")
    assert status == 201 and again["id"] > first["id"]
    assert again["status"] == "open" and again["occurrenceCount"] == 1
    status, repeat = await ingest(http, "ok", "disk")
    assert status == 200 and repeat["id"] == again["id"] and repeat["occurrenceCount"] == 2


async def test_delivered_callbacks_of_a_live_task_go_with_history_retention(
    http: aiohttp.ClientSession, relay: Relay
) -> None:
    task = await new_task(http, "ok", "lease")
    await move(http, task["id"])
    assert await settled(relay, task["id"], 2) == ["delivered", "delivered"]

    result = await prune_all_old(relay)
    assert (result["tasks"], result["callbacks"]) == (0, 2)
    assert await outbox(relay, task["id"]) == []
    assert await exists(http, f"/api/tasks/{task['id']}")

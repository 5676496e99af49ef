"""Sidecar fault cases the real app-server cannot be made to produce on demand, against a small
fake app-server: a dropped WebSocket, and a turn/steer refused because the turn just ended.
Also the approval modes as the sidecar sends them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relayctl.clients.api import RelayAddress
from relayctl.providers.codex.sidecar import Sidecar, SidecarOptions, approval_overrides
from relayd.daemon.relay import Relay
from tests.codex_support import wait_for

pytestmark = pytest.mark.timeout(30)

THREAD = "thread-1"


class FakeAppServer:
    """Answers the handful of methods the sidecar uses; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.active_turn: str | None = None
        self.refuse_steer = False
        self.turns = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeAppServer:
        app = web.Application()
        app.router.add_get("/", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r["params"] for r in self.requests if r.get("method") == method]

    async def broadcast(self, method: str, params: dict[str, Any]) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_json({"method": method, "params": params})

    async def drop_connections(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for frame in ws:
            message = json.loads(frame.data)
            self.frames.append(message)
            if "id" not in message or "method" not in message:
                continue
            self.requests.append(message)
            answer = await self.answer(message["method"], message.get("params") or {})
            reply = ({"id": message["id"], "error": answer[1]} if isinstance(answer, tuple)
                     else {"id": message["id"], "result": answer})
            await ws.send_json(reply)
        return ws

    async def answer(self, method: str, params: dict[str, Any]) -> Any:
        thread = {"id": THREAD, "status": {"type": "idle"}, "turns": []}
        if method == "initialize":
            return {"userAgent": "fake"}
        if method in ("thread/start", "thread/resume", "thread/read"):
            return {"thread": thread}
        if method == "turn/steer":
            if self.refuse_steer or params.get("expectedTurnId") != self.active_turn:
                return (None, {"code": -32600, "message": "no active turn to steer"})
            return {"turnId": self.active_turn}
        if method == "turn/start":
            self.turns += 1
            self.active_turn = f"turn-{self.turns}"
            return {"turn": {"id": self.active_turn, "status": "inProgress", "items": []}}
        return (None, {"code": -32601, "message": f"unknown method {method}"})


@pytest.fixture
async def app_server() -> AsyncIterator[FakeAppServer]:
    server = await FakeAppServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def sidecar_factory(tmp_path: Path, relay: Relay, app_server: FakeAppServer
                          ) -> AsyncIterator[Any]:
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**env: str) -> Sidecar:
        options = SidecarOptions(
            app_server=app_server.url, relay=RelayAddress(relay.url, None),
            env={"AGENT_RELAY_PROFILES_FILE": "", **env}, cwd=tmp_path,
            window=0.05, heartbeat=5, state_file=tmp_path / "state.json")
        sidecar = Sidecar(options)
        stop = asyncio.Event()
        started.append((stop, asyncio.create_task(sidecar.run(stop))))
        await wait_for(lambda: _ready(sidecar), 5)
        return sidecar

    yield start
    for stop, task in started:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def _ready(sidecar: Sidecar) -> bool:
    return sidecar.agent is not None and sidecar.connected.is_set()


async def send(http: aiohttp.ClientSession, to: str, body: str) -> int:
    resp = await http.post("/api/messages", json={"from": "tester", "to": to, "body": body})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


def delivered_ids(server: FakeAppServer) -> list[str]:
    return [p["clientUserMessageId"] for p in server.calls("turn/start") + server.calls(
        "turn/steer")]


async def test_steer_refused_because_the_turn_ended_falls_back_to_turn_start(
        app_server: FakeAppServer, sidecar_factory: Any, http: aiohttp.ClientSession) -> None:
    sidecar = await sidecar_factory()
    agent = sidecar.agent.agent_id
    first = await send(http, agent, "one")
    await wait_for(lambda: _has(app_server, "turn/start", 1), 5)
    await app_server.broadcast("turn/started", {"threadId": THREAD,
                                                "turn": {"id": app_server.active_turn}})
    await wait_for(lambda: _is(sidecar.active_turn, "turn-1"), 5)
    app_server.refuse_steer = True  # the turn ended before the steer arrived
    second = await send(http, agent, "two")
    await wait_for(lambda: _has(app_server, "turn/start", 2), 5)
    assert [p["expectedTurnId"] for p in app_server.calls("turn/steer")] == ["turn-1"]
    assert delivered_ids(app_server) == [f"agent-relay:{first}", f"agent-relay:{second}",
                                         f"agent-relay:{second}"]


async def test_an_accepted_steer_goes_into_the_running_turn(
        app_server: FakeAppServer, sidecar_factory: Any, http: aiohttp.ClientSession) -> None:
    sidecar = await sidecar_factory()
    await send(http, sidecar.agent.agent_id, "one")
    await wait_for(lambda: _has(app_server, "turn/start", 1), 5)
    await app_server.broadcast("turn/started", {"threadId": THREAD, "turn": {"id": "turn-1"}})
    await send(http, sidecar.agent.agent_id, "two")
    await wait_for(lambda: _has(app_server, "turn/steer", 1), 5)
    assert len(app_server.calls("turn/start")) == 1
    assert sidecar.status == "busy"
    await app_server.broadcast("turn/completed", {"threadId": THREAD, "turn": {"id": "turn-1"}})
    await wait_for(lambda: _is(sidecar.status, "idle"), 5)


async def test_a_dropped_websocket_is_reconnected_and_the_thread_rejoined(
        app_server: FakeAppServer, sidecar_factory: Any, http: aiohttp.ClientSession) -> None:
    sidecar = await sidecar_factory()
    agent = sidecar.agent.agent_id
    await app_server.drop_connections()
    message = await send(http, agent, "sent while the socket was down")
    await wait_for(lambda: _has(app_server, "turn/start", 1), 8)
    assert len(app_server.calls("initialize")) >= 2
    assert app_server.calls("thread/resume")[-1]["threadId"] == THREAD
    assert delivered_ids(app_server) == [f"agent-relay:{message}"]
    resp = await http.get(f"/api/agents/{agent}")
    assert (await resp.json())["status"] != "offline"


@pytest.mark.parametrize(("approval", "thread_params", "turn_params"), [
    ("read-only", {"sandbox": "read-only"}, {"sandboxPolicy": {"type": "readOnly"}}),
    ("guarded", {"sandbox": "workspace-write", "approvalPolicy": "on-request"},
     {"sandboxPolicy": {"type": "workspaceWrite"}, "approvalPolicy": "on-request"}),
    ("open", {}, {}),
])
async def test_approval_modes_map_onto_the_thread_and_its_turns(
        app_server: FakeAppServer, sidecar_factory: Any, http: aiohttp.ClientSession,
        approval: str, thread_params: dict[str, Any], turn_params: dict[str, Any]) -> None:
    assert approval_overrides(approval) == {"thread": thread_params, "turn": turn_params}
    sidecar = await sidecar_factory(AGENT_RELAY_APPROVAL=approval)
    started = app_server.calls("thread/start")[0]
    for key in ("sandbox", "approvalPolicy"):
        assert started.get(key) == thread_params.get(key)
    assert started["ephemeral"] is False
    await send(http, sidecar.agent.agent_id, "hi")
    await wait_for(lambda: _has(app_server, "turn/start", 1), 5)
    turn = app_server.calls("turn/start")[0]
    for key in ("sandboxPolicy", "approvalPolicy"):
        assert turn.get(key) == turn_params.get(key)
    agent = await (await http.get(f"/api/agents/{sidecar.agent.agent_id}")).json()
    assert agent["approval"] == approval


async def test_approval_requests_are_never_answered(
        app_server: FakeAppServer, sidecar_factory: Any) -> None:
    await sidecar_factory()
    ws = app_server.sockets[-1]
    before = len(app_server.frames)
    for method in ("item/commandExecution/requestApproval", "item/fileChange/requestApproval",
                   "execCommandApproval", "applyPatchApproval"):
        await ws.send_json({"id": 99, "method": method,
                            "params": {"threadId": THREAD, "command": "rm -rf /"}})
    await asyncio.sleep(0.5)
    # The sidecar sent nothing back: no answer to id 99 (not even a refusal), nothing else.
    assert app_server.frames[before:] == []


async def _has(server: FakeAppServer, method: str, n: int) -> bool:
    return len(server.calls(method)) >= n


async def _is(value: Any, expected: Any) -> bool:
    return bool(value == expected)


async def test_a_relay_that_is_down_is_retried_until_it_comes_up(
        tmp_path: Path, app_server: FakeAppServer, relay_factory: Any) -> None:
    from relayctl.providers.codex.launcher import free_port

    port = free_port()
    options = SidecarOptions(
        app_server=app_server.url, relay=RelayAddress(f"http://127.0.0.1:{port}", None),
        env={"AGENT_RELAY_PROFILES_FILE": ""}, cwd=tmp_path, window=0.05, heartbeat=5,
        state_file=tmp_path / "state.json")
    sidecar = Sidecar(options)
    stop = asyncio.Event()
    task = asyncio.create_task(sidecar.run(stop))
    try:
        await asyncio.sleep(1.0)  # the sidecar is retrying against nothing
        assert not task.done()
        relay = await relay_factory(port=port)
        async with aiohttp.ClientSession(base_url=relay.url) as http:
            agent = await wait_for(lambda: _registered(http), 10)
            message = await send(http, agent, "after the outage")
            await wait_for(lambda: _has(app_server, "turn/start", 1), 10)
            assert delivered_ids(app_server) == [f"agent-relay:{message}"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _registered(http: aiohttp.ClientSession) -> str | None:
    agents = (await (await http.get("/api/agents")).json())["agents"]
    return next((a["id"] for a in agents if a["provider"] == "codex"), None)


async def test_a_sidecar_whose_agent_was_taken_over_stops_acting(
        app_server: FakeAppServer, sidecar_factory: Any, http: aiohttp.ClientSession) -> None:
    sidecar = await sidecar_factory()
    agent = sidecar.agent.agent_id
    await wait_for(lambda: _is(sidecar.epoch is not None, True), 5)
    resp = await http.post("/api/agents", json={"id": agent, "instanceId": "another-window"})
    assert (await resp.json())["epoch"] > sidecar.epoch
    await app_server.broadcast("turn/started", {"threadId": THREAD, "turn": {"id": "t"}})
    await wait_for(lambda: _is(sidecar.superseded.is_set(), True), 5)
    await send(http, agent, "for the new holder, not for this sidecar")
    await asyncio.sleep(0.5)
    assert app_server.calls("turn/start") == []
    agent_now = await (await http.get(f"/api/agents/{agent}")).json()
    assert agent_now["instanceId"] == "another-window"

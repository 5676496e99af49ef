"""Codex delivery latency: relay send → `item/completed` of the injected user message.

Starts relayd, a fake Responses API (so turns complete offline), the real `codex app-server`
and the sidecar, all on loopback. For each message: POST /api/messages, then wait on a separate
app-server connection (subscribed to the sidecar's thread) for the `item/completed` of the user
message carrying it, and for the turn to complete before the next one (so every delivery is a
`turn/start` into an idle thread). Baseline, same run: a plain WebSocket client issuing
`turn/start` on its own thread and waiting for the same `item/completed`.

The sidecar is measured twice: with the default 500 ms coalescing window (what users get: the
window is a deliberate wait) and with the window at 0, which is the bridge's own cost.

    python bench/bench_codex.py              # 100 messages per series
    python bench/bench_codex.py -n 20        # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relayctl.providers.codex.launcher import free_port, wait_ready  # noqa: E402
from tests.fake_codex_model import FakeModel, write_codex_home  # noqa: E402
from tests.helpers import RelaydProcess, cli_env  # noqa: E402


class Client:
    """A plain app-server client: requests, and a queue of notifications."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            message = frame.json()
            if "method" in message and "id" not in message:
                await self.events.put(message)
            elif message.get("id") in self.pending:
                self.pending.pop(message["id"]).set_result(message)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        rid = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.ws.send_json({"id": rid, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def until(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(self.events.get(), deadline - time.monotonic())
            if predicate(event):
                return event


def user_item_with(marker: str, thread: str) -> Any:
    def check(event: dict[str, Any]) -> bool:
        params = event.get("params") or {}
        item = params.get("item") or {}
        return (event["method"] == "item/completed" and params.get("threadId") == thread
                and item.get("type") == "userMessage"
                and any(marker in (part.get("text") or "") for part in item.get("content") or []))
    return check


def turn_done(thread: str) -> Any:
    return lambda e: e["method"] == "turn/completed" and e["params"].get("threadId") == thread


async def connect(session: aiohttp.ClientSession, url: str) -> Client:
    client = Client(await session.ws_connect(url, max_msg_size=0))
    await client.call("initialize", {"clientInfo": {"name": "bench", "version": "1"}})
    return client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<34} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   "
            f"p99 {pct(ms, 0.99):7.1f} ms   max {max(ms):7.1f} ms")


async def sidecar_series(session: aiohttp.ClientSession, relay: RelaydProcess, url: str,
                         env: dict[str, str], window_ms: int, count: int) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relayctl.providers.codex.sidecar", "--app-server", url,
        "--window-ms", str(window_ms),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        info = {}
        for _ in range(2):
            key, _, value = (await proc.stdout.readline()).decode().strip().partition(": ")
            info[key] = value
        thread, agent = info["thread"], info["agent"]
        api = relay.api

        async def send(body: str) -> None:
            async with session.post(api + "/messages",
                                    json={"from": "bench", "to": agent, "body": body}) as r:
                assert r.status == 201, await r.text()

        # A first turn gives the thread a rollout, so the watcher can join it.
        watcher = await connect(session, url)
        await send("warm-up")
        for _ in range(100):
            try:
                await watcher.call("thread/resume", {"threadId": thread, "excludeTurns": True})
                break
            except RuntimeError:
                await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):  # it may have completed before we joined
            await watcher.until(turn_done(thread), timeout=5)
        latencies = []
        for n in range(count):
            marker = f"bench-{window_ms}-{n}-{os.getpid()}"
            started = time.perf_counter()
            await send(marker)
            await watcher.until(user_item_with(marker, thread))
            latencies.append(time.perf_counter() - started)
            await watcher.until(turn_done(thread))
        await watcher.ws.close()
        return latencies
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def direct_series(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    client = await connect(session, url)
    thread = (await client.call("thread/start", {"ephemeral": False}))["thread"]["id"]
    latencies = []
    for n in range(count):
        marker = f"direct-{n}-{os.getpid()}"
        started = time.perf_counter()
        await client.call("turn/start", {"threadId": thread, "input": [
            {"type": "text", "text": marker, "text_elements": []}]})
        await client.until(user_item_with(marker, thread))
        latencies.append(time.perf_counter() - started)
        await client.until(turn_done(thread))
    await client.ws.close()
    return latencies


def start_app_server(codex: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    app = subprocess.Popen([codex, "app-server", "--listen", f"ws://127.0.0.1:{port}"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(port, app, 30)
    return app


async def main(messages: int, codex: str, tmp: Path) -> None:
    relay = RelaydProcess(tmp).start()
    model = await FakeModel().start()
    home = write_codex_home(tmp / "codex-home", model.base_url)
    env = cli_env(tmp, CODEX_HOME=str(home), AGENT_RELAY_URL=str(relay.url))
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    app = await asyncio.to_thread(start_app_server, codex, port, env)
    try:
        async with aiohttp.ClientSession() as session:
            direct = await direct_series(session, url, messages)
            relayed0 = await sidecar_series(session, relay, url, env, 0, messages)
            relayed = await sidecar_series(session, relay, url, env, 500, messages)
            direct2 = await direct_series(session, url, messages)
        version = (await asyncio.to_thread(subprocess.run, [codex, "--version"],
                                           capture_output=True, text=True)).stdout
        print(f"{version.strip()}, {messages} messages per series, fake model on loopback")
        print(line("baseline: direct turn/start", direct + direct2))
        print(line("relay → sidecar, window 0 ms", relayed0))
        print(line("relay → sidecar, window 500 ms", relayed))
        extra = statistics.median(relayed0) - statistics.median(direct + direct2)
        print(f"bridge overhead at p50 (window 0): {extra * 1000:.1f} ms")
    finally:
        app.terminate()
        await asyncio.to_thread(app.wait, 10)
        relay.stop()
        await model.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=100)
    args = parser.parse_args()
    codex = shutil.which(os.environ.get("AGENT_RELAY_CODEX_BIN") or "codex")
    if codex is None:
        sys.exit("codex is not installed: npm install -g @openai/codex@0.171.0")
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else None
    asyncio.run(main(args.messages, codex, Path(tempfile.mkdtemp(prefix="bench-codex-", dir=base))))


if __name__ == "__main__":
    cli()

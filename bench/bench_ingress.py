"""Integration ingress and callback benchmarks (issue 4), against plain sends in the same run.

Prints figures; asserts nothing. Everything runs on loopback and stops by itself.

    python bench/bench_ingress.py [--seconds 5] [--callbacks 200]

1. POST /api/messages (claimable, to a tag of 2 agents) per second: the baseline.
2. POST /api/integrations/events per second with dedupe on: 64 dedupeKeys shared by all
   senders, so almost every event is an occurrence of an active task (no new message).
3. The same with a fresh dedupeKey per event: every event creates a task and its message.
4. Callback delivery latency p50/p99: event posted -> its task.created callback arrives at an
   aiohttp receiver on loopback (one event every 20 ms, so latency, not backlog, is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

CONCURRENCY = 32
TOKEN = "bench-token-0123456789"
CB_TOKEN = "bench-cb-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_relayd(tmp: Path, callback_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    integrations = [
        {"name": "bench", "token": TOKEN, "scopes": ["tasks:create"]},
        {"name": "bench-cb", "token": CB_TOKEN, "scopes": ["tasks:create"],
         "callbackUrl": callback_url, "callbackSecret": "bench-secret"},
    ]
    (tmp / "empty.toml").write_text("")
    env = {
        **os.environ,
        "PORT": str(port),
        "DB_PATH": str(tmp / "relay.db"),
        "AGENT_RELAY_SOCKET": str(tmp / "relayd.sock"),
        "AGENT_RELAY_CONFIG": str(tmp / "empty.toml"),
        "AGENT_RELAY_LOG_LEVEL": "warning",
        "AGENT_RELAY_INTEGRATIONS": json.dumps(integrations),
        "AGENT_RELAY_INTEGRATION_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    proc = subprocess.Popen([sys.executable, "-m", "relayd.main"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{url}/api/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("relayd did not start")


async def rate(
    session: aiohttp.ClientSession, url: str, seconds: float,
    make: Callable[[int], tuple[dict[str, Any], dict[str, str]]],
) -> tuple[float, dict[int, int]]:
    counts: dict[int, int] = {}
    numbers = itertools.count()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            body, headers = make(next(numbers))
            async with session.post(url, json=body, headers=headers) as resp:
                await resp.read()
                counts[resp.status] = counts.get(resp.status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sum(counts.values()) / (time.perf_counter() - started), counts


def plain_send(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    return {"from": "bench", "to": "tag:oncall", "body": f"job {n}", "claimable": True}, {}


def event(key: str) -> dict[str, Any]:
    return {"type": "alert", "title": "disk full", "target": "tag:oncall", "dedupeKey": key,
            "body": "x" * 200}


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def deduped_event(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    return event(f"shared-{n % 64}"), AUTH


def fresh_event(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    return event(f"fresh-{n}"), AUTH


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.waiters: dict[int, asyncio.Future[None]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        task_id = body["task"]["id"]
        self.arrived.setdefault(task_id, time.perf_counter())
        waiter = self.waiters.get(task_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return web.Response(status=204)


async def callback_latency(url: str, receiver: Receiver, count: int) -> dict[str, float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {CB_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            started = time.perf_counter()
            async with session.post(f"{url}/api/integrations/events", json=event(f"cb-{n}"),
                                    headers=headers) as resp:
                task_id = (await resp.json())["task"]["id"]
            waiter = receiver.waiters.setdefault(
                task_id, asyncio.get_running_loop().create_future()
            )
            if task_id not in receiver.arrived:
                await asyncio.wait_for(waiter, 10)
            latencies.append(receiver.arrived[task_id] - started)
            await asyncio.sleep(0.02)
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "n": len(latencies),
    }


async def main(seconds: float, callbacks: int) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_relayd(Path(tmp), f"http://127.0.0.1:{hook_port}/hook")
        try:
            await wait_ready(url)
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:
                for agent in ("bob", "carol"):
                    await session.post(f"{url}/api/agents", json={"id": agent, "tags": ["oncall"]})
                plain, plain_counts = await rate(session, f"{url}/api/messages", seconds,
                                                 plain_send)
                ingress = f"{url}/api/integrations/events"
                deduped, deduped_counts = await rate(session, ingress, seconds, deduped_event)
                fresh, fresh_counts = await rate(session, ingress, seconds, fresh_event)
            latency = await callback_latency(url, receiver, callbacks)
        finally:
            proc.terminate()
            proc.wait(15)
    await runner.cleanup()
    print(f"plain message sends      {plain:8.0f} /s   {plain_counts}")
    print(f"ingress, dedupe hits     {deduped:8.0f} /s   {deduped_counts}"
          f"   ratio to plain sends {deduped / plain:.2f}")
    print(f"ingress, new task each   {fresh:8.0f} /s   {fresh_counts}"
          f"   ratio to plain sends {fresh / plain:.2f}")
    print(f"callback latency         p50 {latency['p50_ms']:.1f} ms   "
          f"p99 {latency['p99_ms']:.1f} ms   (n={latency['n']:.0f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--callbacks", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.callbacks))

"""relayd's resident memory with and without the MCP SDK, and MCP tool-call latency.

Starts a real relayd on a free loopback port (tmp database), and prints:
- idle RSS after start (the SDK is not imported yet),
- RSS after the first /mcp session (the SDK is loaded then), and the first call's extra time,
- the import cost of the SDK alone, measured in a fresh interpreter in the same run,
- relay_send latency p50/p99 over MCP against POST /api/messages in the same run.

    python bench/bench_mcp.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx2
import psutil
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import RelaydProcess  # noqa: E402

TOKEN = "bench-token"
HTTP_TIMEOUT = httpx2.Timeout(60.0)
IMPORT_PROBE = """
import psutil, relayd.daemon.relay
before = psutil.Process().memory_info().rss
import relayd.mcp.server
after = psutil.Process().memory_info().rss
print(before, after)
"""


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def api_sends(url: str, calls: int) -> list[float]:
    times: list[float] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for i in range(calls):
            start = time.perf_counter()
            resp = await http.post(f"{url}/api/messages",
                                   json={"from": "bench", "to": "sink", "body": f"m{i}"})
            assert resp.status == 201, await resp.text()
            await resp.read()
            times.append(time.perf_counter() - start)
    return times


async def mcp_sends(session: ClientSession, calls: int) -> list[float]:
    times: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        result = await session.call_tool("relay_send", {"agent": "bench", "to": "sink",
                                                        "body": f"m{i}"})
        assert not result.is_error, result.content
        times.append(time.perf_counter() - start)
    return times


async def main(calls: int) -> None:
    probe = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", IMPORT_PROBE],
                                    capture_output=True, text=True, check=True, cwd=ROOT)
    relayd_only, with_sdk = (int(x) for x in probe.stdout.split())
    with tempfile.TemporaryDirectory() as tmp:
        relay = RelaydProcess(Path(tmp), {"AGENT_RELAY_TOKEN": TOKEN}).start()
        try:
            assert relay.proc is not None and relay.url is not None
            proc = psutil.Process(relay.proc.pid)
            await asyncio.sleep(2)
            idle = proc.memory_info().rss
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as h:
                resp = await h.post(f"{relay.url}/api/agents", json={"id": "sink"})
                assert resp.status in (200, 201)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            start = time.perf_counter()
            async with (
                httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT) as http,
                streamable_http_client(f"{relay.url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                first = time.perf_counter() - start
                await asyncio.sleep(2)
                loaded = proc.memory_info().rss
                for _ in range(2):  # alternate, medians of each
                    api = await api_sends(relay.url, calls)
                    over_mcp = await mcp_sends(session, calls)
        finally:
            relay.stop()
    print(f"relayd idle RSS (SDK not loaded):        {mib(idle)}  (limit 60 MiB)")
    print(f"relayd RSS after the first /mcp session:  {mib(loaded)}  (+{mib(loaded - idle)})")
    print(f"first /mcp initialize (loads the SDK):    {first * 1000:.0f} ms")
    print(f"import cost in a fresh interpreter:       relayd {mib(relayd_only)} -> "
          f"with the SDK {mib(with_sdk)} (+{mib(with_sdk - relayd_only)})")
    print(f"send latency over {calls} calls: POST /api/messages p50 "
          f"{statistics.median(api) * 1000:.2f} ms p99 {pct(api, 0.99) * 1000:.2f} ms; "
          f"MCP relay_send p50 {statistics.median(over_mcp) * 1000:.2f} ms "
          f"p99 {pct(over_mcp, 0.99) * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    os.environ.pop("AGENT_RELAY_TOKEN", None)
    asyncio.run(main(parser.parse_args().calls))

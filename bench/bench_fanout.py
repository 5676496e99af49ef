"""Fan-out stored once (issue 12): N broadcasts to M registered agents while another client
keeps sending direct messages, whose latency p50/p99 is measured over the sends that overlap
the broadcasts (the ones before and after would dilute it); plus the database growth.

    python bench/bench_fanout.py [--agents 10000] [--broadcasts 500] [--concurrency 8]

Prints figures; asserts nothing. relayd runs as a subprocess on loopback (pinned to one core
with --cpu N when taskset exists; the load runs unpinned or with --load-cpu).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Server, pin_self


async def register_agents(url: str, count: int) -> float:
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                async with session.post(f"{url}/api/agents", json={
                        "id": f"agent-{i:05d}", "tags": ["fleet"]}) as resp:
                    assert resp.status in (200, 201), await resp.text()

        await asyncio.gather(*[worker() for _ in range(32)])
    return time.perf_counter() - start


async def broadcasts(url: str, count: int, concurrency: int,
                     seconds: float | None = None) -> dict[str, float]:
    """`count` broadcasts from `concurrency` clients (or as many as `seconds` allow) while
    another client sends direct messages one at a time."""
    latencies: list[float] = []
    stop, broadcasting = asyncio.Event(), asyncio.Event()
    async with aiohttp.ClientSession() as session:

        async def direct_sender() -> None:  # "another client": 200 sends/s, one at a time
            i = 0
            while not stop.is_set():
                started, overlapped = time.perf_counter(), broadcasting.is_set()
                async with session.post(f"{url}/api/messages", json={
                        "from": "other", "to": "agent-00001", "body": f"direct {i}"}) as resp:
                    await resp.read()
                    assert resp.status == 201
                if overlapped or broadcasting.is_set():  # only sends overlapping the broadcasts
                    latencies.append(time.perf_counter() - started)
                i += 1
                await asyncio.sleep(0.005)

        other = asyncio.create_task(direct_sender())
        await asyncio.sleep(0.5)
        queue = iter(range(count))
        recipients = []

        deadline = time.perf_counter() + (seconds if seconds is not None else 1e9)

        async def broadcaster() -> None:
            for i in queue:
                if time.perf_counter() > deadline:
                    return
                async with session.post(f"{url}/api/messages", json={
                        "from": "ops", "to": "broadcast", "body": f"all hands {i}"}) as resp:
                    raw = await resp.read()
                    assert resp.status == 201, raw[:200]
                    recipients.append(raw.count(b'"agent-'))

        start = time.perf_counter()
        broadcasting.set()
        await asyncio.gather(*[broadcaster() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
        broadcasting.clear()
        await asyncio.sleep(0.5)
        stop.set()
        await other
    latencies.sort()
    return {
        "seconds": elapsed,
        "broadcasts": len(recipients),
        "recipients_each": statistics.median(recipients),
        "direct_sends": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
    }


async def run(args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="relay-fanout-"))
    relayd = Server("relayd", tmp, cpu=args.cpu)
    try:
        await relayd.wait_ready()
        took = await register_agents(relayd.url, args.agents)
        print(f"# registered {args.agents} agents in {took:.1f}s")
        result = await broadcasts(relayd.url, args.broadcasts, args.concurrency)
        result["db_mib"] = relayd.db_mib()
        print(f"{args.broadcasts} broadcasts to {args.agents} agents: {result['seconds']:.2f}s "
              f"[target < 5 s]  ({result['recipients_each']:.0f} recipients each, "
              f"concurrency {args.concurrency}); another client's {result['direct_sends']} "
              f"sends meanwhile p50={result['p50_ms']:.1f}ms p99={result['p99_ms']:.1f}ms "
              f"[target p99 < 50 ms]; database {result['db_mib']:.1f} MiB")
        return result
    finally:
        relayd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--broadcasts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cpu", type=int, default=None, help="pin relayd to this core")
    parser.add_argument("--load-cpu", type=int, default=None, help="pin this script here")
    args = parser.parse_args()
    pin_self(args.load_cpu)
    asyncio.run(run(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

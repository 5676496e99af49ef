"""PostgreSQL benchmarks (issue 11), against SQLite measured in the same run.

Prints figures; asserts nothing. Everything runs on loopback and stops by itself. Starts its
own throwaway PostgreSQL (.ci/start-postgres: fsync on, synchronous_commit on), unless
--pg-url names one (a schema per phase is created there and dropped).

    python bench/bench_pg.py [--seconds 5] [--rounds 3] [--streams 300] [--events 40]

1. Durable POST /api/messages throughput, 64 concurrent senders (an aiohttp load generator in
   its own process): SQLite relayd, one PostgreSQL replica, three PostgreSQL replicas (the
   senders spread over them).
2. SSE delivery latency p50/p99: streams spread over three PostgreSQL replicas, messages sent
   to one replica, vs the same streams on one SQLite relayd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_core import CONCURRENCY, SEND_BODY, Server  # noqa: E402

LOADGEN = r"""
import asyncio, sys, time, json, aiohttp
urls, seconds = sys.argv[1].split(","), float(sys.argv[2])
conc, body = int(sys.argv[3]), sys.argv[4]
async def worker(session, url, deadline, counts):
    while time.perf_counter() < deadline:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            counts[r.status] = counts.get(r.status, 0) + 1
async def main():
    counts = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        start = time.perf_counter()
        await asyncio.gather(*[worker(s, urls[i % len(urls)], start + seconds, counts)
                               for i in range(conc)])
        print(json.dumps({"rate": counts.get(201, 0) / (time.perf_counter() - start),
                          "counts": counts}))
asyncio.run(main())
"""


class Relayd(Server):
    """bench_core's relayd in a folder of its own, on PostgreSQL when `db_url` is set."""

    def __init__(self, tmp: Path, name: str, db_url: str | None) -> None:
        home = tmp / name
        home.mkdir()
        super().__init__("relayd", home, {"DB_URL": db_url} if db_url else None)


async def start(tmp: Path, name: str, count: int, db_url: str | None) -> list[Relayd]:
    relays = [Relayd(tmp, f"{name}{i}", db_url) for i in range(count)]
    for relay in relays:
        await relay.wait_ready()
    async with aiohttp.ClientSession() as session:
        await session.post(f"{relays[0].url}/api/agents", json={"id": "sink"})
    return relays


def throughput(urls: list[str], seconds: int) -> tuple[float, dict[str, int]]:
    out = subprocess.run(
        [sys.executable, "-c", LOADGEN, ",".join(f"{u}/api/messages" for u in urls),
         str(seconds), str(CONCURRENCY), json.dumps(SEND_BODY)],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    data = json.loads(out)
    return float(data["rate"]), data["counts"]


async def sse_latency(relays: list[Relayd], streams: int, events: int) -> dict[str, float]:
    """Streams spread over `relays`; messages sent to the first; ms from send to arrival."""
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(None)) as session:
        responses = []
        for n in range(streams):
            resp = await session.get(f"{relays[n % len(relays)].url}/api/events")
            await resp.content.readline()  # ": connected"
            responses.append(resp)

        async def read(resp: aiohttp.ClientResponse) -> None:
            got = 0
            while got < events:
                line = await resp.content.readline()
                if line.startswith(b"data:"):
                    data = json.loads(line[5:])
                    mark = data.get("body", "")
                    if mark in sent_at:
                        latencies.append((time.perf_counter() - sent_at[mark]) * 1000)
                        got += 1

        readers = [asyncio.create_task(read(r)) for r in responses]
        for n in range(events):
            mark = f"lat-{n}-{uuid.uuid4().hex[:6]}"
            sent_at[mark] = time.perf_counter()
            async with session.post(f"{relays[0].url}/api/messages",
                                    json={"from": "bench", "to": "sink", "body": mark}) as r:
                assert r.status == 201
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        for resp in responses:
            resp.close()
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


async def schema_url(server: str) -> str:
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    return f"{server}?search_path={schema}"


async def run(args: argparse.Namespace, server: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-pg-"))
    sqlite = await start(tmp, "sqlite", 1, None)
    pg1 = await start(tmp, "pgone", 1, await schema_url(server))
    pg3 = await start(tmp, "pgthree", 3, await schema_url(server))
    setups = {"sqlite": sqlite, "pg x1": pg1, "pg x3": pg3}
    try:
        print(f"# {CONCURRENCY} concurrent senders, {args.seconds}s per phase, "
              f"{args.rounds} rounds alternating; cpus={os.cpu_count()}; "
              "PostgreSQL synchronous_commit=on, fsync=on")
        rates: dict[str, list[float]] = {name: [] for name in setups}
        errors: dict[str, dict[str, int]] = {}
        for _ in range(args.rounds):
            for name, relays in setups.items():
                rate, counts = throughput([r.url for r in relays], args.seconds)
                rates[name].append(rate)
                errors[name] = counts
        base = statistics.median(rates["sqlite"])
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"durable sends/s {name:<7} median={median:,.0f}/s  vs sqlite "
                  f"{median / base:.2f}  rounds={[round(v) for v in values]}  "
                  f"last answers={errors[name]}")
        for name, relays in (("sqlite x1", sqlite), ("pg x3", pg3)):
            runs = [await sse_latency(relays, args.streams, args.events)
                    for _ in range(args.rounds)]
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            print(f"sse delivery {name:<9} ({args.streams} streams, {args.events} events, "
                  f"median of {args.rounds})  p50={p50:.1f}ms  p99={p99:.1f}ms")
    finally:
        for relays in setups.values():
            for relay in relays:
                relay.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--pg-url", help="an existing server (default: start a throwaway one)")
    args = parser.parse_args()
    if args.pg_url:
        asyncio.run(run(args, args.pg_url))
        return
    out = subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres")], capture_output=True,
                         text=True, check=True)
    values: dict[str, Any] = dict(
        line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines()
    )
    try:
        asyncio.run(run(args, values["AGENT_RELAY_TEST_PG_URL"]))
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), "--stop",
                        values["AGENT_RELAY_TEST_PG_DIR"]], check=False)


if __name__ == "__main__":
    main()

"""Benchmarks of the relay core (issue 2), each against a baseline measured in the same run.

Unpinned: relayd and the load generator share both cores (the per-core figures of issue 12
are bench_percore.py's).

Prints figures; asserts nothing. Everything runs on loopback and stops by itself.

    python bench/bench_core.py [--seconds 5] [--streams 1000] [--events 40]

1. Durable POST /api/messages throughput, 64 concurrent senders (wrk if installed, else an
   aiohttp load generator in its own process), relayd vs bench/bare_server.py.
2. SSE delivery latency p50/p99 with N open streams: relayd (message.new on the firehose) vs the
   bare server writing the same frames to its streams.
3. Claims per second, 30 racers per claimable message.
4. relayd RSS idle and with N open streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 64
RACERS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, kind: str, tmp: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PORT": str(self.port), "DB_PATH": str(tmp / f"{kind}.db"),
               "AGENT_RELAY_SOCKET": str(tmp / f"{kind}.sock"),
               "AGENT_RELAY_CONFIG": str(tmp / "empty.toml"), "AGENT_RELAY_LOG_LEVEL": "warning",
               "AGENT_RELAY_SSE_QUEUE_SIZE": "5000", **(extra_env or {})}
        (tmp / "empty.toml").write_text("")
        if kind == "relayd":
            cmd = [sys.executable, "-m", "relayd.main"]
        else:
            cmd = [sys.executable, str(ROOT / "bench" / "bare_server.py"), str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    async def wait_ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.post(f"{self.url}/api/messages", data=b"{",
                                            headers={"Content-Type": "application/json"}
                                            ) as resp:
                        if resp.status in (400, 500):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # also on another answer (e.g. 503 while starting)
        raise RuntimeError(f"{self.kind} did not start")

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------ throughput

SEND_BODY = {"from": "bench", "to": "sink", "body": "x" * 200, "subject": "load"}
WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{json.dumps(SEND_BODY)}'
wrk.headers["Content-Type"] = "application/json"
"""


def throughput_wrk(url: str, seconds: int, tmp: Path) -> tuple[float, str]:
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "-s", str(script),
         f"{url}/api/messages"], capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, f"non-2xx={errors.group(1) if errors else 0}"


LOADGEN = r"""
import asyncio, sys, time, json, aiohttp
url, seconds, conc, body = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
async def worker(session, deadline, counts):
    while time.perf_counter() < deadline:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            counts[r.status] = counts.get(r.status, 0) + 1
async def main():
    counts = {}
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as s:
        start = time.perf_counter()
        await asyncio.gather(*[worker(s, start + seconds, counts) for _ in range(conc)])
        rate = sum(counts.values()) / (time.perf_counter() - start)
        print(json.dumps({"rate": rate, "counts": counts}))
asyncio.run(main())
"""


def throughput_python(url: str, seconds: int) -> tuple[float, str]:
    out = subprocess.run(
        [sys.executable, "-c", LOADGEN, f"{url}/api/messages", str(seconds), str(CONCURRENCY),
         json.dumps(SEND_BODY)], capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    result = json.loads(out)
    return float(result["rate"]), f"statuses={result['counts']}"


def throughput(url: str, seconds: int, tmp: Path) -> tuple[float, str]:
    if shutil.which("wrk"):
        return throughput_wrk(url, seconds, tmp)
    return throughput_python(url, seconds)


# ------------------------------------------------------------------------------ SSE latency


async def open_streams(url: str, count: int, session: aiohttp.ClientSession
                       ) -> list[aiohttp.ClientResponse]:
    async def one() -> aiohttp.ClientResponse:
        resp = await session.get(f"{url}/api/events", timeout=aiohttp.ClientTimeout(total=None))
        await resp.content.readline()  # ": connected"
        return resp

    streams: list[aiohttp.ClientResponse] = []
    for start in range(0, count, 100):
        streams.extend(await asyncio.gather(*[one() for _ in range(min(100, count - start))]))
    return streams


async def read_stream(resp: aiohttp.ClientResponse, wanted: int,
                      received: list[float], sent_at: dict[str, float]) -> None:
    got = 0
    while got < wanted:
        line = await resp.content.readline()
        if not line:
            return
        if line.startswith(b"data: ") and b"bench-" in line:
            now = time.perf_counter()
            tag = re.search(rb"bench-(\d+)", line).group(0).decode()  # type: ignore[union-attr]
            received.append(now - sent_at[tag])
            got += 1


async def sse_latency(server: Server, streams_n: int, events: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        streams = await open_streams(server.url, streams_n, session)
        rss = server.rss_mib()
        received: list[float] = []
        sent_at: dict[str, float] = {}
        readers = [asyncio.create_task(read_stream(s, events, received, sent_at))
                   for s in streams]
        path = "/api/messages" if server.kind == "relayd" else "/fanout"
        for i in range(events):
            tag = f"bench-{i}"
            sent_at[tag] = time.perf_counter()
            body = {"from": "bench", "to": "sink", "body": tag}
            async with session.post(f"{server.url}{path}", json=body) as resp:
                assert resp.status == 201, await resp.text()
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
        for s in streams:
            s.close()
    received.sort()
    return {
        "p50_ms": 1000 * statistics.median(received),
        "p99_ms": 1000 * received[int(len(received) * 0.99) - 1],
        "deliveries": len(received),
        "rss_mib": rss,
    }


# ------------------------------------------------------------------------------ claims


async def claims(url: str, messages: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        for i in range(RACERS):
            await session.post(f"{url}/api/agents", json={"id": f"racer{i}", "tags": ["crew"]})
        ids = []
        for _ in range(messages):
            async with session.post(f"{url}/api/messages", json={
                    "from": "bench", "to": "tag:crew", "body": "job", "claimable": True}) as r:
                ids.append((await r.json())["id"])
        winners = 0
        start = time.perf_counter()
        for message_id in ids:
            async def claim(agent: str, message_id: int = message_id) -> int:
                async with session.post(f"{url}/api/messages/{message_id}/claim",
                                        json={"agent": agent}) as r:
                    return r.status
            statuses = await asyncio.gather(*[claim(f"racer{i}") for i in range(RACERS)])
            winners += statuses.count(200)
        elapsed = time.perf_counter() - start
    return {"claims_per_s": RACERS * messages / elapsed, "messages": messages,
            "exactly_one_winner_each": winners == messages}


# ------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    relayd, bare = Server("relayd", tmp), Server("bare", tmp)
    try:
        await relayd.wait_ready()
        await bare.wait_ready()
        async with aiohttp.ClientSession() as session:
            await session.post(f"{relayd.url}/api/agents", json={"id": "sink"})
        idle_rss = relayd.rss_mib()
        loadgen = "wrk" if shutil.which("wrk") else "aiohttp loadgen"
        print(f"# load generator: {loadgen}; {CONCURRENCY} concurrent senders; "
              f"{args.seconds}s per phase; cpus={os.cpu_count()}")
        base_rates, relay_rates = [], []
        for _ in range(args.rounds):  # alternate, so drift on a noisy machine hits both
            base_rates.append(throughput(bare.url, args.seconds, tmp))
            relay_rates.append(throughput(relayd.url, args.seconds, tmp))
        base_rate = statistics.median(r for r, _ in base_rates)
        relay_rate = statistics.median(r for r, _ in relay_rates)
        print(f"[unpinned] send throughput (median of {args.rounds})  bare={base_rate:,.0f}/s  "
              f"relayd={relay_rate:,.0f}/s  ratio={relay_rate / base_rate:.2f}  [target >= 0.6]"
              f"  rounds bare={[round(r) for r, _ in base_rates]} "
              f"relayd={[round(r) for r, _ in relay_rates]} ({relay_rates[-1][1]})")
        base_runs, relay_runs = [], []
        for _ in range(args.rounds):
            base_runs.append(await sse_latency(bare, args.streams, args.events))
            relay_runs.append(await sse_latency(relayd, args.streams, args.events))
        base_sse = {k: statistics.median(r[k] for r in base_runs) for k in base_runs[0]}
        relay_sse = {k: statistics.median(r[k] for r in relay_runs) for k in relay_runs[0]}
        print(f"[unpinned] sse latency ({args.streams} streams, {args.events} events, median of "
              f"{args.rounds})  bare p50={base_sse['p50_ms']:.1f}ms p99={base_sse['p99_ms']:.1f}ms"
              f"  relayd p50={relay_sse['p50_ms']:.1f}ms p99={relay_sse['p99_ms']:.1f}ms  "
              f"p50 ratio={relay_sse['p50_ms'] / base_sse['p50_ms']:.2f}  "
              f"p99 ratio={relay_sse['p99_ms'] / base_sse['p99_ms']:.2f}  [target <= 1.5]")
        claim = await claims(relayd.url, args.claim_messages)
        print(f"claims  {claim['claims_per_s']:,.0f} claim requests/s with {RACERS} racers "
              f"per message over {claim['messages']} messages; exactly one winner each: "
              f"{claim['exactly_one_winner_each']}")
        print(f"relayd rss  idle={idle_rss:.1f} MiB  with {args.streams} streams="
              f"{relay_sse['rss_mib']:.1f} MiB  (bare with streams={base_sse['rss_mib']:.1f} MiB)")
    finally:
        relayd.stop()
        bare.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--claim-messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

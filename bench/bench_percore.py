"""The per-core figures of issue 12, each as a ratio to its baseline measured in the same run.

Every server is pinned to one core (taskset), the load generator (wrk, or this script's own
aiohttp clients) to the other, so the daemon's threads cannot borrow the load generator's
core. Rounds alternate between the servers; figures are medians over the rounds.

    python bench/bench_percore.py [--seconds 5] [--rounds 3] [--streams 1000]
                                  [--agents 10000] [--broadcasts 500]

Baselines: bench/bare_server.py (a bare aiohttp handler on uvloop + orjson that stores
nothing) and bench/bun_server.js (the seed's stack: Bun + bun:sqlite, WAL, synchronous=FULL,
a commit per request; `cd bench/bun && npm install` first, see bench/README.md).
Needs: wrk (`apt-get install -y wrk`), taskset, 2+ cores. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import sse_latency
from bench_fanout import broadcasts, register_agents
from harness import BUN, Server, median, pin_self

SERVER_CPU, LOAD_CPU = 0, 1
SEND_BODY = {"from": "bench", "to": "sink", "body": "x" * 200, "subject": "load"}
POST_LUA = f"""
wrk.method = "POST"
wrk.body = '{json.dumps(SEND_BODY)}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, seconds: int, connections: int, tmp: Path, post: bool) -> float:
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    if post:
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk against {url} failed or saw errors:\n{out}")
    return float(found.group(1))


def ratio_line(name: str, value: float, base: float, base_name: str, unit: str,
               target: str, rounds: list[float] | None = None) -> str:
    extra = f"  rounds={[round(r) for r in rounds]}" if rounds else ""
    return (f"{name}: {value:,.1f}{unit} vs {base_name} {base:,.1f}{unit}  "
            f"ratio={value / base:.2f}  [{target}]{extra}")


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-percore-"))
    have_bun = BUN.exists()
    servers = {"relayd": Server("relayd", tmp, cpu=SERVER_CPU),
               "bare": Server("bare", tmp, cpu=SERVER_CPU)}
    if have_bun:
        servers["bun"] = Server("bun", tmp, cpu=SERVER_CPU)
    try:
        for server in servers.values():
            await server.wait_ready()
        async with aiohttp.ClientSession() as session:
            for server in servers.values():
                async with session.post(f"{server.url}/api/agents", json={"id": "sink"}) as r:
                    assert r.status in (200, 201), await r.text()
            async with session.get(f"{servers['bare'].url}/bare/info") as r:
                bare_info = await r.json()
        idle_rss = servers["relayd"].rss_mib()
        print(f"# per-core run: servers pinned to cpu {SERVER_CPU}, load on cpu {LOAD_CPU}; "
              f"{args.seconds}s phases, {args.rounds} alternating rounds, medians; "
              f"cpus={os.cpu_count()}; bare server on {bare_info['loop']} + {bare_info['json']}"
              f"; bun={'yes' if have_bun else 'MISSING (cd bench/bun && npm install)'}")

        # 1. durable sends, c=64
        sends: dict[str, list[float]] = {name: [] for name in servers}
        for round_no in range(args.rounds):
            names = list(servers)
            shift = round_no % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                sends[name].append(wrk(f"{servers[name].url}/api/messages", args.seconds, 64,
                                       tmp, post=True))
        relay_rate, bare_rate = median(sends["relayd"]), median(sends["bare"])
        print(ratio_line("durable send c=64 pinned", relay_rate, bare_rate, "bare", "/s",
                         "target >= 0.6", sends["relayd"]))
        if have_bun:
            bun_rate = median(sends["bun"])
            print(ratio_line("durable send c=64 pinned", relay_rate, bun_rate, "bun+sqlite",
                             "/s", "target >= 4.0", sends["bun"]))

        # 2. inbox poll, c=16: what a poller mostly gets (nothing new since its cursor)
        async with (aiohttp.ClientSession() as session,
                    session.get(f"{servers['relayd'].url}/api/messages/cursor") as r):
            cursor = (await r.json())["cursor"]
        polls: dict[str, list[float]] = {"relayd": [], "bare": []}
        for round_no in range(args.rounds):
            for name in (("relayd", "bare") if round_no % 2 else ("bare", "relayd")):
                url = f"{servers[name].url}/api/messages?for=sink&since={cursor}"
                polls[name].append(wrk(url, args.seconds, 16, tmp, post=False))
        print(ratio_line("inbox poll GET /api/messages?for=sink&since=<cursor> c=16 pinned",
                         median(polls["relayd"]), median(polls["bare"]), "bare GET", "/s",
                         "target >= 0.5", polls["relayd"]))

        # 3. SSE fan-out to N streams: delivery latency
        runs: dict[str, list[dict[str, float]]] = {"relayd": [], "bare": []}
        for round_no in range(args.rounds):
            for name in (("relayd", "bare") if round_no % 2 else ("bare", "relayd")):
                runs[name].append(await sse_latency(servers[name], args.streams, args.events))
        relay_p99 = median([r["p99_ms"] for r in runs["relayd"]])
        bare_p99 = median([r["p99_ms"] for r in runs["bare"]])
        relay_p50 = median([r["p50_ms"] for r in runs["relayd"]])
        bare_p50 = median([r["p50_ms"] for r in runs["bare"]])
        print(ratio_line(f"SSE fan-out {args.streams} streams p99", relay_p99, bare_p99,
                         "bare fan-out", "ms", "target <= 1.0"),
              f" (p50 relayd={relay_p50:.1f}ms bare={bare_p50:.1f}ms)")
        streams_rss = median([r["rss_mib"] for r in runs["relayd"]])
        bare_streams_rss = median([r["rss_mib"] for r in runs["bare"]])

        # 4. RSS
        print(f"relayd RSS idle: {idle_rss:.1f} MiB  [target < 60]; with {args.streams} "
              f"streams: {streams_rss:.1f} MiB  [target < 100]  (bare with streams: "
              f"{bare_streams_rss:.1f} MiB)")
    finally:
        for server in servers.values():
            server.stop()

    # 5. broadcasts, on a fresh relay (pinned like the rest)
    fresh = Server("relayd", tmp, cpu=SERVER_CPU)
    try:
        await fresh.wait_ready()
        took = await register_agents(fresh.url, args.agents)
        result = await broadcasts(fresh.url, args.broadcasts, args.concurrency)
        print(f"{args.broadcasts} broadcasts to {args.agents} agents: {result['seconds']:.2f}s "
              f"= {result['seconds'] / 5:.2f} x the 5 s target [target < 1.0]; another client's "
              f"{result['direct_sends']:.0f} sends meanwhile p99={result['p99_ms']:.1f}ms = "
              f"{result['p99_ms'] / 50:.2f} x the 50 ms target [target < 1.0] "
              f"(p50={result['p50_ms']:.1f}ms; agents registered in {took:.1f}s; database "
              f"{fresh.db_mib():.1f} MiB)")
    finally:
        fresh.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--broadcasts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench_percore needs wrk and taskset (apt-get install -y wrk util-linux)")
    pin_self(LOAD_CPU)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

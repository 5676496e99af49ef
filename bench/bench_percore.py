"""The per-core figures of issue 12, each as a ratio to its baseline measured in the same run.

Every server is pinned to one core (taskset), the load generator (wrk, or this script's own
aiohttp clients) to the other, so the daemon's threads cannot borrow the load generator's
core. Rounds alternate between the servers; figures are medians over the rounds.

Two throughput figures per phase: requests per wall-clock second (what a client sees) and
requests per CPU-second the server process used (user + system, all its threads). On a busy
shared machine the first moves with everything else running there; the second is the per-core
cost and stays put.

    python bench/bench_percore.py [--seconds 5] [--rounds 3] [--streams 1000]
                                  [--agents 10000] [--broadcasts 500] [--skip sse,broadcast]

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
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

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


@dataclass
class Phase:
    wall: float  # requests per second
    per_cpu: float  # requests per CPU-second of the server
    loop_us: float = 0.0  # CPU microseconds per request on the main (event-loop) thread
    other_us: float = 0.0  # on every other thread (relayd: the SQLite writer and reader)


@dataclass
class Row:
    """One line of the closing table: a figure, its baseline from this run, the target."""
    figure: str
    ours: str
    baseline: str
    ratio: float
    target: str  # e.g. ">= 0.6"; ratio is compared with it

    def met(self) -> bool:
        op, _, limit = self.target.partition(" ")
        value = float(limit)
        return {">=": self.ratio >= value, "<=": self.ratio <= value,
                "<": self.ratio < value}[op]


TABLE: list[Row] = []


def print_table() -> None:
    print("\n| figure | relayd | baseline (same run) | ratio | target | met |", flush=True)
    print("| --- | --- | --- | --- | --- | --- |")
    for row in TABLE:
        print(f"| {row.figure} | {row.ours} | {row.baseline} | {row.ratio:.3g} | "
              f"{row.target} | {'yes' if row.met() else 'NO'} |")


def recording_cost_us(batch: int = 32, n: int = 200_000) -> float:
    """CPU microseconds of what relayd records for /metrics per send, timed in-process: the
    middleware's two clock reads, Metrics.request, Metrics.events for one message.new, and
    Metrics.committed amortized over a group commit of `batch`."""
    from relayd.domain.models import Event
    from relayd.metrics import Metrics

    metrics = Metrics()
    event = Event(1, "message.new", {"id": 1}, frozenset({"sink"}))
    events = [event]
    started = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        seconds = time.perf_counter() - t0
        metrics.request("/api/messages", "POST", 201, seconds)
        event.data["id"] = i + 2
        metrics.events(events)
        if i % batch == 0:
            metrics.committed(batch)
    return 1e6 * (time.process_time() - started) / n


def thread_cpu(server: Server) -> tuple[float, float]:
    """CPU seconds (user + system) of the server's main thread and of all its others."""
    process = psutil.Process(server.proc.pid)
    main = other = 0.0
    for thread in process.threads():
        used = thread.user_time + thread.system_time
        if thread.id == process.pid:
            main += used
        else:
            other += used
    return main, other


def wrk(server: Server, path: str, seconds: int, connections: int, tmp: Path,
        post: bool) -> Phase:
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    if post:
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
        cmd += ["-s", str(script)]
    main_before, other_before = thread_cpu(server)
    out = subprocess.run([*cmd, f"{server.url}{path}"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    main_after, other_after = thread_cpu(server)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found is None or total is None or errors is not None:
        raise RuntimeError(f"wrk against {server.kind} {path} failed or saw errors:\n{out}")
    requests = int(total.group(1))
    main_used, other_used = main_after - main_before, other_after - other_before
    return Phase(float(found.group(1)), requests / max(main_used + other_used, 1e-9),
                 1e6 * main_used / requests, 1e6 * other_used / requests)


def cpu_split(runs: dict[str, list[Phase]]) -> str:
    """Where each server's CPU per request went (medians): main thread + other threads."""
    return "; ".join(
        f"{name} {median([p.loop_us for p in phases]):.0f} + "
        f"{median([p.other_us for p in phases]):.0f} us"
        for name, phases in runs.items()
    )


def report(name: str, runs: dict[str, list[Phase]], base: str, target: str,
           per_cpu: bool = True) -> None:
    ours, theirs = runs["relayd"], runs[base]
    wall, base_wall = median([p.wall for p in ours]), median([p.wall for p in theirs])
    line = (f"{name}: relayd {wall:,.0f}/s vs {base} {base_wall:,.0f}/s  "
            f"ratio={wall / base_wall:.2f}  [target {target}{'' if per_cpu else ' (wall)'}]")
    if per_cpu:
        cpu, base_cpu = median([p.per_cpu for p in ours]), median([p.per_cpu for p in theirs])
        line += (f"  | per CPU-second: relayd {cpu:,.0f} vs {base} {base_cpu:,.0f}  "
                 f"ratio={cpu / base_cpu:.2f}")
        TABLE.append(Row(f"{name}, per CPU-second", f"{cpu:,.0f}", f"{base} {base_cpu:,.0f}",
                         cpu / base_cpu, target))
        TABLE.append(Row(f"{name}, wall clock", f"{wall:,.0f}/s", f"{base} {base_wall:,.0f}/s",
                         wall / base_wall, target))
    else:
        TABLE.append(Row(f"{name}, wall clock", f"{wall:,.0f}/s", f"{base} {base_wall:,.0f}/s",
                         wall / base_wall, target))
    line += (f"  | rounds relayd={[round(p.wall) for p in ours]} "
             f"{base}={[round(p.wall) for p in theirs]}")
    print(line, flush=True)


def rotated(names: list[str], round_no: int) -> list[str]:
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


async def start_servers(tmp: Path) -> dict[str, Server]:
    servers = {"relayd": Server("relayd", tmp, cpu=SERVER_CPU),
               "bare": Server("bare", tmp, cpu=SERVER_CPU)}
    if BUN.exists():
        servers["bun"] = Server("bun", tmp, cpu=SERVER_CPU)
    for server in servers.values():
        await server.wait_ready()
    async with aiohttp.ClientSession() as session:
        for server in servers.values():
            async with session.post(f"{server.url}/api/agents", json={"id": "sink"}) as r:
                assert r.status in (200, 201), await r.text()
    return servers


async def describe(args: argparse.Namespace, servers: dict[str, Server]) -> None:
    async with (aiohttp.ClientSession() as session,
                session.get(f"{servers['bare'].url}/bare/info") as r):
        bare_info = await r.json()
    print(f"# per-core run: servers pinned to cpu {SERVER_CPU}, load on cpu {LOAD_CPU}; "
          f"{args.seconds}s phases, {args.rounds} alternating rounds, medians; "
          f"cpus={os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; bare server on "
          f"{bare_info['loop']} + {bare_info['json']}; bun "
          f"{'1.4.5' if 'bun' in servers else 'MISSING (cd bench/bun && npm install)'}",
          flush=True)


def phase_sends(args: argparse.Namespace, servers: dict[str, Server], tmp: Path) -> None:
    sends: dict[str, list[Phase]] = {name: [] for name in servers}
    for round_no in range(args.rounds):
        for name in rotated(list(servers), round_no):
            sends[name].append(wrk(servers[name], "/api/messages", args.seconds, 64, tmp,
                                   post=True))
    report("durable send c=64", sends, "bare", ">= 0.6")
    print(f"  CPU per send, main thread + other threads: {cpu_split(sends)}", flush=True)
    if "bun" in servers:
        report("durable send c=64", sends, "bun", ">= 4.0", per_cpu=False)
    per_send_us = 1e6 / median([p.per_cpu for p in sends["relayd"]])
    recording = recording_cost_us()
    print(f"/metrics recording: {recording:.2f} us of the {per_send_us:.0f} us of CPU a send "
          f"costs = {100 * recording / per_send_us:.2f}%  [target < 3%]", flush=True)
    TABLE.append(Row("/metrics recording per send", f"{recording:.2f} us",
                     f"CPU per send {per_send_us:.0f} us", recording / per_send_us, "< 0.03"))


async def phase_polls(args: argparse.Namespace, servers: dict[str, Server], tmp: Path) -> None:
    async with (aiohttp.ClientSession() as session,
                session.get(f"{servers['relayd'].url}/api/messages/cursor") as r):
        cursor = (await r.json())["cursor"]
    path = f"/api/messages?for=sink&since={cursor}"  # a poller's usual answer: nothing new
    polls: dict[str, list[Phase]] = {"relayd": [], "bare GET": []}
    for round_no in range(args.rounds):
        for name in rotated(["bare GET", "relayd"], round_no):
            server = servers["bare" if name == "bare GET" else name]
            polls[name].append(wrk(server, path, args.seconds, 16, tmp, post=False))
    report("inbox poll ?for=sink&since=<cursor> c=16", polls, "bare GET", ">= 0.5")
    print(f"  CPU per poll, main thread + other threads: {cpu_split(polls)}", flush=True)


async def phase_sse(args: argparse.Namespace, servers: dict[str, Server]) -> None:
    runs: dict[str, list[dict[str, float]]] = {"relayd": [], "bare": []}
    for round_no in range(args.rounds):
        for name in rotated(["bare", "relayd"], round_no):
            runs[name].append(await sse_latency(servers[name], args.streams, args.events))
    p99 = {n: median([r["p99_ms"] for r in runs[n]]) for n in runs}
    p50 = {n: median([r["p50_ms"] for r in runs[n]]) for n in runs}
    rss = {n: median([r["rss_mib"] for r in runs[n]]) for n in runs}
    print(f"SSE fan-out to {args.streams} streams, {args.events} events: p99 relayd "
          f"{p99['relayd']:.1f}ms vs bare {p99['bare']:.1f}ms  "
          f"ratio={p99['relayd'] / p99['bare']:.2f}  [target <= 1.0]  (p50 relayd "
          f"{p50['relayd']:.1f}ms bare {p50['bare']:.1f}ms; p99 rounds relayd="
          f"{[round(r['p99_ms'], 1) for r in runs['relayd']]} bare="
          f"{[round(r['p99_ms'], 1) for r in runs['bare']]})", flush=True)
    print(f"relayd RSS with {args.streams} streams {rss['relayd']:.1f} MiB = "
          f"{rss['relayd'] / 100:.2f} x 100 MiB [target < 1.0] (bare with streams "
          f"{rss['bare']:.1f} MiB)", flush=True)
    TABLE.append(Row(f"SSE fan-out to {args.streams} streams, p99", f"{p99['relayd']:.1f} ms",
                     f"bare fan-out {p99['bare']:.1f} ms", p99["relayd"] / p99["bare"],
                     "<= 1.0"))
    TABLE.append(Row(f"RSS with {args.streams} streams", f"{rss['relayd']:.1f} MiB",
                     f"target 100 MiB (bare {rss['bare']:.1f} MiB)", rss["relayd"] / 100,
                     "< 1.0"))


async def phase_broadcasts(args: argparse.Namespace, tmp: Path) -> None:
    fresh = Server("relayd", tmp, cpu=SERVER_CPU)
    try:
        await fresh.wait_ready()
        took = await register_agents(fresh.url, args.agents)
        result = await broadcasts(fresh.url, args.broadcasts, args.concurrency)
        database = fresh.db_mib()
    finally:
        fresh.stop()
    print(f"{args.broadcasts} broadcasts to {args.agents} agents (relayd pinned): "
          f"{result['seconds']:.2f}s = {result['seconds'] / 5:.2f} x the 5 s target "
          f"[target < 1.0]; another client's {result['direct_sends']:.0f} sends "
          f"meanwhile p99 {result['p99_ms']:.1f}ms = {result['p99_ms'] / 50:.2f} x the "
          f"50 ms target [target < 1.0] (p50 {result['p50_ms']:.1f}ms; {args.agents} "
          f"agents registered in {took:.1f}s; database {database:.1f} MiB)", flush=True)
    TABLE.append(Row(f"{args.broadcasts} broadcasts to {args.agents} agents, total",
                     f"{result['seconds']:.2f} s", "target 5 s", result["seconds"] / 5, "< 1.0"))
    TABLE.append(Row(f"another client's sends meanwhile ({result['direct_sends']:.0f}), p99",
                     f"{result['p99_ms']:.1f} ms", "target 50 ms", result["p99_ms"] / 50,
                     "< 1.0"))


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-percore-"))
    servers: dict[str, Server] = {}
    try:
        servers = await start_servers(tmp)
        idle_rss = servers["relayd"].rss_mib()
        await describe(args, servers)
        phase_sends(args, servers, tmp)
        if "poll" not in args.skip:
            await phase_polls(args, servers, tmp)
        if "sse" not in args.skip:
            await phase_sse(args, servers)
    finally:
        for server in servers.values():
            server.stop()
    print(f"relayd RSS idle {idle_rss:.1f} MiB = {idle_rss / 60:.2f} x 60 MiB [target < 1.0]",
          flush=True)
    TABLE.append(Row("RSS idle", f"{idle_rss:.1f} MiB", "target 60 MiB", idle_rss / 60, "< 1.0"))
    if "broadcast" not in args.skip:
        await phase_broadcasts(args, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print_table()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--broadcasts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma list of: poll, sse, broadcast")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench_percore needs wrk and taskset (apt-get install -y wrk util-linux)")
    pin_self(LOAD_CPU)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

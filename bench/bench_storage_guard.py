"""What storage honesty costs on POST /api/messages (issue 7): relayd as shipped against the
same relayd with the database-file check switched off, measured in the same run, alternating.

Prints figures; asserts nothing. Loopback only; stops by itself.

    python bench/bench_storage_guard.py [--seconds 4] [--rounds 5]

1. Throughput of durable sends, 64 concurrent senders (bench_core's load generator), guarded
   vs unguarded relayd (the unguarded one patches DatabaseFileGuard.problem in its own process).
2. The same through the store alone (no HTTP, no load generator): sends/s and sends per commit.
3. The check itself: microseconds per DatabaseFileGuard.problem() call, and the relay's commits
   per second (the check runs twice per group commit, not per request), so its share of the
   time is also computed directly.
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
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_core

from relayd.storage.base import MessageDraft
from relayd.storage.sqlite import SQLiteStore
from relayd.storage.sqlite_guard import DatabaseFileGuard

UNGUARDED = (
    "import sys\n"
    "from relayd.storage import sqlite_guard\n"
    "sqlite_guard.DatabaseFileGuard.problem = lambda self, after_commit=False: None\n"
    "from relayd.main import main\n"
    "sys.exit(main())\n"
)
# The shipped relayd, counting its group commits (pre-commit checks) for the figures below.
GUARDED = (
    "import atexit, os, sys\n"
    "from relayd.storage import sqlite_guard\n"
    "real, calls = sqlite_guard.DatabaseFileGuard.problem, [0]\n"
    "def counted(self, after_commit=False):\n"
    "    calls[0] += not after_commit\n"
    "    return real(self, after_commit)\n"
    "sqlite_guard.DatabaseFileGuard.problem = counted\n"
    "atexit.register(lambda: open(os.environ['BENCH_COMMITS_FILE'], 'w').write(str(calls[0])))\n"
    "from relayd.main import main\n"
    "sys.exit(main())\n"
)


class RelayServer(bench_core.Server):
    """bench_core's relayd, optionally with the database-file check patched out."""

    def __init__(self, kind: str, tmp: Path) -> None:
        folder = tmp / kind
        folder.mkdir()
        self.kind = "relayd"
        self.port = bench_core.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "empty.toml").write_text("")
        env = {**os.environ, "PORT": str(self.port), "DB_PATH": str(folder / "relay.db"),
               "AGENT_RELAY_SOCKET": str(folder / "relayd.sock"),
               "AGENT_RELAY_CONFIG": str(folder / "empty.toml"),
               "AGENT_RELAY_LOG_LEVEL": "warning",
               "BENCH_COMMITS_FILE": str(folder / "commits.txt")}
        self.commits_file = folder / "commits.txt"
        cmd = [sys.executable, "-c", UNGUARDED if kind == "unguarded" else GUARDED]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)


    async def wait_ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.url}/api/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("relayd did not start")


def check_cost(tmp: Path, calls: int = 200_000) -> float:
    db = tmp / "guard.db"
    db.write_bytes(b"")
    Path(f"{db}-wal").write_bytes(b"")
    guard = DatabaseFileGuard(db)
    guard.arm()
    start = time.perf_counter()
    for _ in range(calls):
        guard.problem()
        guard.problem(after_commit=True)
    return (time.perf_counter() - start) / calls * 1e6  # µs per commit (both checks)


async def store_rate(store: SQLiteStore, seconds: float) -> tuple[float, float]:
    """(sends/s, sends per group commit) through the store alone: 64 concurrent senders."""
    deadline = time.perf_counter() + seconds
    sent = 0
    commits_before = store.commits

    async def sender() -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            await store.send_message(MessageDraft(sender="bench", to="sink", body="x" * 200))
            sent += 1

    start = time.perf_counter()
    await asyncio.gather(*[sender() for _ in range(bench_core.CONCURRENCY)])
    elapsed = time.perf_counter() - start
    return sent / elapsed, sent / max(1, store.commits - commits_before)


async def store_level(tmp: Path, seconds: float, rounds: int) -> float:
    """The same comparison without HTTP: the store's writer is where the check runs."""
    store = SQLiteStore(tmp / "store.db")
    await store.open(lambda events: None)
    await store.register_agent({"id": "sink"})
    real = DatabaseFileGuard.problem
    rates: dict[bool, list[float]] = {True: [], False: []}
    per_commit: list[float] = []
    try:
        for index in range(rounds):
            for guarded in (True, False) if index % 2 else (False, True):
                DatabaseFileGuard.problem = (  # type: ignore[method-assign]
                    real if guarded else (lambda self, after_commit=False: None))
                rate, batch = await store_rate(store, seconds)
                rates[guarded].append(rate)
                per_commit.append(batch)
    finally:
        DatabaseFileGuard.problem = real  # type: ignore[method-assign]
        await store.close()
    base, guard = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"store.send_message (median of {rounds})  without check={base:,.0f}/s  with check="
          f"{guard:,.0f}/s  change={100 * (guard - base) / base:+.1f}%  sends per group commit="
          f"{statistics.median(per_commit):.1f}")
    return statistics.median(per_commit)


async def prepare(server: RelayServer) -> None:
    await server.wait_ready()
    async with aiohttp.ClientSession() as session:
        await session.post(f"{server.url}/api/agents", json={"id": "sink"})


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-guard-bench-"))
    guarded = RelayServer("guarded", tmp)
    unguarded = RelayServer("unguarded", tmp)
    try:
        await prepare(guarded)
        await prepare(unguarded)
        print(f"# {bench_core.CONCURRENCY} concurrent senders; {args.seconds}s per phase; "
              f"{args.rounds} rounds alternating; cpus={os.cpu_count()}")
        with_rates: list[float] = []
        without_rates: list[float] = []
        cpu: dict[int, list[float]] = {id(guarded): [], id(unguarded): []}
        for index in range(args.rounds):
            pair = [(unguarded, without_rates), (guarded, with_rates)]
            for server, rates in pair if index % 2 == 0 else reversed(pair):
                process = psutil.Process(server.proc.pid)
                before = sum(process.cpu_times()[:2])
                rate = bench_core.throughput(server.url, args.seconds, tmp)[0]
                rates.append(rate)
                used = sum(process.cpu_times()[:2]) - before
                cpu[id(server)].append(1e6 * used / (rate * args.seconds))  # CPU µs per send
        base = statistics.median(without_rates)
        guard = statistics.median(with_rates)
        print(f"POST /api/messages (median of {args.rounds})  without check={base:,.0f}/s  "
              f"with check={guard:,.0f}/s  change={100 * (guard - base) / base:+.1f}%  "
              f"[target > -3%]  rounds without={[round(r) for r in without_rates]} "
              f"with={[round(r) for r in with_rates]}")
        cpu_base = statistics.median(cpu[id(unguarded)])
        cpu_guard = statistics.median(cpu[id(guarded)])
        print(f"relayd CPU per send (median; less sensitive to other load)  without check="
              f"{cpu_base:.1f} µs  with check={cpu_guard:.1f} µs  change="
              f"{100 * (cpu_guard - cpu_base) / cpu_base:+.1f}%")
        batch = await store_level(tmp, args.seconds / 2, args.rounds)
        per_commit = check_cost(tmp)
        worst = guard * per_commit / 1e6  # one commit per send is the worst case
        print(f"the check: {per_commit:.2f} µs per group commit (three stat calls): "
              f"{per_commit / batch:.2f} µs per send at {batch:.0f} sends per commit, i.e. "
              f"{100 * per_commit / batch * guard / 1e6:.2f}% of one core at {guard:,.0f} "
              f"sends/s; at most {100 * worst:.2f}% even with one commit per send")
        guarded.stop()
        commits = int(guarded.commits_file.read_text())
        sends = sum(with_rates) * args.seconds
        print(f"over HTTP: {sends:,.0f} sends in {commits:,} group commits = "
              f"{sends / max(1, commits):.1f} sends per commit, so the check costs "
              f"{per_commit * commits / sends:.2f} µs per send = "
              f"{100 * per_commit * commits / sends / cpu_guard:.2f}% of relayd's CPU per send")
    finally:
        guarded.stop()
        unguarded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""What the HTTP defences of issue 7 cost, and what they save, each against a baseline
measured in the same run. Prints figures; asserts nothing; loopback only.

    python bench/bench_security.py [--seconds 5] [--rounds 3]

1. POST /api/messages throughput (64 concurrent senders, bench_core's load generator):
   this checkout vs a copy of it with the browser checks (Host, Origin, JSON body) and the
   guarded connection layer (head counting, watchdog) taken out again, alternating rounds.
2. relayd RSS under 100 unfinished 6 MB header blocks, and under 20 SSE readers that resume
   from event 0 of a ~24 MB log and never read: this checkout vs the code before issue 7
   (BASE_COMMIT, or --base), both with the same data.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_core import free_port, throughput  # noqa: E402

from tests.hostile_clients import (  # noqa: E402
    fill_event_log,
    health_seconds,
    oversized_header,
    rss_mib,
    stalled_sse_reader,
)

BASE_COMMIT = "d6eb5f8"  # main before the issue-7 work


class Relayd:
    def __init__(
        self, source: Path, tmp: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "empty.toml").write_text("")
        full = {**os.environ, "PORT": str(self.port), "DB_PATH": str(tmp / f"{name}.db"),
                "AGENT_RELAY_SOCKET": str(tmp / f"{name}.sock"),
                "AGENT_RELAY_CONFIG": str(tmp / "empty.toml"), "PYTHONPATH": str(source),
                "AGENT_RELAY_LOG_LEVEL": "warning", "XDG_RUNTIME_DIR": str(tmp),
                **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "relayd.main"], env=full,
                                     cwd=source, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    async def ready(self) -> None:
        for _ in range(300):
            try:
                await health_seconds(self.url)
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("relayd did not start")

    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def export(commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def without_checks(into: Path) -> Path:
    """This checkout with the new per-request work removed: the baseline of the cost."""
    into.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(ROOT / "relayd"), str(into)], check=True)
    app = into / "relayd" / "app.py"
    text = app.read_text()
    for line in (
        "        check_host(policy, host, lambda: _local_address(request))\n",
        '        check_origin(policy, headers.get("Origin"), headers.get("Sec-Fetch-Site"),'
        " host)\n",
        '            check_json_body(request.method, headers.get("Content-Type"), '
        "request.body_exists)\n",
    ):
        assert line in text, line
        text = text.replace(line, line[: len(line) - len(line.lstrip())] + "pass\n")
    app.write_text(text)
    life = into / "relayd" / "lifecycle.py"
    text = life.read_text()
    text = text.replace("self.runner = GuardedAppRunner(", "self.runner = web.AppRunner(")
    text = text.replace("            limits=self.connection_limits,\n", "")
    life.write_text(text)
    return into


async def bench_throughput(seconds: int, rounds: int, tmp: Path) -> None:
    base = without_checks(tmp / "nochecks")
    rates: dict[str, list[float]] = {"checks": [], "no checks": []}
    for round_ in range(rounds):
        for label, source in (("no checks", base), ("checks", ROOT)):
            relay = Relayd(source, tmp, f"t{round_}{label[0]}")
            try:
                await relay.ready()
                async with aiohttp.ClientSession() as http:
                    await http.post(relay.url + "/api/agents", json={"id": "sink"})
                rate, detail = throughput(relay.url, seconds, tmp)
                rates[label].append(rate)
                print(f"  round {round_ + 1} {label:>9}: {rate:8.0f} sends/s ({detail})")
            finally:
                relay.stop()
    with_, without = statistics.median(rates["checks"]), statistics.median(rates["no checks"])
    print(f"POST /api/messages: {with_:.0f}/s with the checks, {without:.0f}/s without"
          f" (median of {rounds}): cost {100 * (1 - with_ / without):+.1f}%")
    paired = statistics.median(
        1 - c / n for c, n in zip(rates["checks"], rates["no checks"], strict=True)
    )
    print(f"  median of the per-round costs: {100 * paired:+.1f}%")


async def header_attack(relay: Relayd) -> tuple[float, float, float]:
    before = relay.rss()
    tasks = [asyncio.ensure_future(oversized_header(relay.url)) for _ in range(100)]
    peak, start = before, time.monotonic()
    while not all(t.done() for t in tasks) and time.monotonic() - start < 30:
        await asyncio.sleep(0.25)
        peak = max(peak, relay.rss())
    try:
        health = await health_seconds(relay.url)
    except Exception:
        health = float("inf")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return before, peak, health


async def replay_attack(relay: Relayd) -> tuple[float, float, float]:
    await fill_event_log(relay.url, messages=400, body_bytes=60_000)
    before = relay.rss()
    readers = [stalled_sse_reader(relay.url, 0) for _ in range(20)]
    peak, start = before, time.monotonic()
    while time.monotonic() - start < 8:
        await asyncio.sleep(0.25)
        peak = max(peak, relay.rss())
    try:
        health = await health_seconds(relay.url)
    except Exception:
        health = float("inf")
    for sock in readers:
        sock.close()
    return before, peak, health


async def bench_memory(base_commit: str, tmp: Path) -> None:
    old = export(base_commit, tmp / "before")
    for label, source in ((f"before ({base_commit})", old), ("now", ROOT)):
        for attack, run in (("100 x 6 MB unfinished headers", header_attack),
                            ("20 stalled SSE replays from 0", replay_attack)):
            relay = Relayd(source, tmp, f"m{label[0]}{attack[0]}")
            try:
                await relay.ready()
                before, peak, health = await run(relay)
                print(f"{label:>20} | {attack}: RSS {before:6.1f} -> {peak:7.1f} MiB,"
                      f" /api/health {health * 1000:.0f} ms")
            finally:
                relay.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=BASE_COMMIT)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-security-") as name:
        tmp = Path(name)
        await bench_throughput(args.seconds, args.rounds, tmp)
        if not args.skip_memory:
            await bench_memory(args.base, tmp)


if __name__ == "__main__":
    asyncio.run(main())

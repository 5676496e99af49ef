"""Profile relayd under load with py-spy: relayd pinned to one core, wrk on the other.

    pip install py-spy
    python bench/profile_relay.py OUT.raw [--seconds 10] [--poll | --broadcast]

Writes py-spy's raw (collapsed) stacks to OUT.raw and prints the top frames by own and by
inclusive time, per thread (the event loop and the SQLite writer). --poll profiles inbox polls
(GET /api/messages?for=…&since=…) instead of sends; --broadcast profiles broadcasts to 10,000
registered agents while another client sends (bench_fanout.py's load, as many broadcasts as
fill the profile).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fanout import broadcasts, register_agents
from bench_percore import LOAD_CPU, POST_LUA, SERVER_CPU
from harness import Server, pin_self


def summarize(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        threads[frames[0]] += count
        names = [_name(f) for f in frames[1:]]
        if names:
            own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    print(f"samples: {total}")
    for thread, count in threads.most_common(4):
        print(f"  thread {thread[:70]}: {100 * count / total:.1f}%")
    print("own time:")
    for name, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("inclusive time:")
    for name, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {name}")


def _name(frame: str) -> str:
    function, _, location = frame.strip().partition(" (")
    where = location.rstrip(")").split(":")[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{function} ({short})"


def spy(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    cmd = ["py-spy", "record", "-r", "250", "-d", str(args.seconds), "-f", "raw", "-o",
           str(args.out), "--pid", str(pid), "--threads", "--nonblocking"]
    return subprocess.Popen([*cmd, *(["--gil"] if args.gil else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def profile_broadcasts(args: argparse.Namespace, relayd: Server) -> None:
    await register_agents(relayd.url, 10_000)
    profiler = spy(args, relayd.proc.pid)
    result = await broadcasts(relayd.url, 10**9, 8, seconds=args.seconds)
    await asyncio.to_thread(profiler.wait)
    print(f"# broadcasts under profile: {result['broadcasts']:.0f} in {result['seconds']:.1f}s; "
          f"another client's sends p50 {result['p50_ms']:.1f}ms p99 {result['p99_ms']:.1f}ms")


async def profile_wrk(args: argparse.Namespace, relayd: Server, tmp: Path) -> None:
    async with aiohttp.ClientSession() as session:
        await session.post(f"{relayd.url}/api/agents", json={"id": "sink"})
        for _ in range(200):
            await session.post(f"{relayd.url}/api/messages",
                               json={"from": "b", "to": "sink", "body": "warm"})
    wrk = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-d{args.seconds + 4}s"]
    if args.poll:
        wrk += ["-c16", f"{relayd.url}/api/messages?for=sink&since=200"]
    else:
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
        wrk += ["-c64", "-s", str(script), f"{relayd.url}/api/messages"]
    load = await asyncio.create_subprocess_exec(*wrk, stdout=subprocess.PIPE)
    await asyncio.sleep(2)
    await asyncio.to_thread(spy(args, relayd.proc.pid).wait)
    out, _ = await load.communicate()
    rate = [line for line in out.decode().splitlines() if "Requests/sec" in line]
    print(f"# {'polls' if args.poll else 'sends'} under profile: {rate}")


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-profile-"))
    relayd = Server("relayd", tmp, cpu=SERVER_CPU)
    try:
        await relayd.wait_ready()
        if args.broadcast:
            await profile_broadcasts(args, relayd)
        else:
            await profile_wrk(args, relayd, tmp)
    finally:
        relayd.stop()
    summarize(args.out, args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--poll", action="store_true")
    parser.add_argument("--broadcast", action="store_true")
    parser.add_argument("--gil", action="store_true",
                        help="only samples holding the GIL: where the Python CPU time goes")
    pin_self(LOAD_CPU)  # the broadcasting client, like bench_percore.py's
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

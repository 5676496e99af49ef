"""A/B of durable sends between two source trees of relayd, pinned like bench_percore.py.

    git archive main | tar -x -C /tmp/relay-main      # e.g. the tree to compare against
    python bench/bench_ab.py /tmp/relay-main . [--seconds 5] [--rounds 5] [--path /api/messages]

Each tree's relayd runs from its own sources (PYTHONPATH) on core 0, wrk c=64 on core 1,
rounds alternating; prints sends per CPU-second of the server and per wall-clock second,
medians, and B's ratio to A. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_percore import LOAD_CPU, SERVER_CPU, Phase, rotated, wrk
from harness import Server, median, pin_self


async def run(args: argparse.Namespace, trees: dict[str, Path]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-ab-"))
    servers = {name: Server("relayd", tmp, cpu=SERVER_CPU, env={"PYTHONPATH": str(tree)})
               for name, tree in trees.items()}
    phases: dict[str, list[Phase]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            await server.wait_ready()
            async with aiohttp.ClientSession() as session:
                await session.post(f"{server.url}/api/agents", json={"id": "sink"})
        post = args.path == "/api/messages"
        for round_no in range(args.rounds):
            for name in rotated(list(servers), round_no):
                phases[name].append(wrk(servers[name], args.path, args.seconds, args.connections,
                                        tmp, post=post))
    finally:
        for server in servers.values():
            server.stop()
    cpu = {n: median([p.per_cpu for p in phases[n]]) for n in phases}
    wall = {n: median([p.wall for p in phases[n]]) for n in phases}
    for name, tree in trees.items():
        print(f"{name} {tree}: {cpu[name]:,.0f} per CPU-second, {wall[name]:,.0f}/s wall  "
              f"rounds per-cpu={[round(p.per_cpu) for p in phases[name]]}")
    print(f"B/A per CPU-second {cpu['B'] / cpu['A']:.3f}, wall {wall['B'] / wall['A']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--path", default="/api/messages")
    args = parser.parse_args()
    pin_self(LOAD_CPU)
    asyncio.run(run(args, {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}))


if __name__ == "__main__":
    main()

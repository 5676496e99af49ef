"""What /metrics costs the send path (issue 12: under 3%), two ways in one run.

1. A/B: relayd as shipped vs relayd with the metric recording calls stubbed out, both pinned
   to one core, wrk c=64 on the other, alternating rounds; sends per CPU-second of the server
   (robust on a shared machine) and per wall-clock second, medians.
2. The recording calls themselves, timed in-process on one request's worth of work (the
   middleware's two clock reads and route lookup, Metrics.request, Metrics.events for one
   message.new, Metrics.committed amortized over a group commit), as a share of the CPU time
   one send costs relayd in the A/B run.

    python bench/bench_metrics_cost.py [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_percore import LOAD_CPU, SERVER_CPU, recording_cost_us, rotated, wrk
from harness import Server, median, pin_self

STUBBED = (
    "import relayd.metrics as m, sys; "
    "m.Metrics.request = lambda *a: None; m.Metrics.events = lambda *a: None; "
    "m.Metrics.committed = lambda *a: None; "
    "import relayd.main; sys.exit(relayd.main.main())"
)


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-metrics-cost-"))
    servers = {
        "with metrics": Server("relayd", tmp, cpu=SERVER_CPU),
        "stubbed": Server("relayd", tmp, cpu=SERVER_CPU,
                          cmd=[sys.executable, "-c", STUBBED]),
    }
    try:
        for server in servers.values():
            await server.wait_ready()
            async with aiohttp.ClientSession() as session:
                await session.post(f"{server.url}/api/agents", json={"id": "sink"})
        phases: dict[str, list] = {name: [] for name in servers}
        for round_no in range(args.rounds):
            for name in rotated(list(servers), round_no):
                phases[name].append(wrk(servers[name], "/api/messages", args.seconds, 64, tmp,
                                        post=True))
    finally:
        for server in servers.values():
            server.stop()
    on, off = phases["with metrics"], phases["stubbed"]
    cpu_on, cpu_off = median([p.per_cpu for p in on]), median([p.per_cpu for p in off])
    wall_on, wall_off = median([p.wall for p in on]), median([p.wall for p in off])
    print(f"A/B sends per CPU-second: with metrics {cpu_on:,.0f} vs stubbed {cpu_off:,.0f} "
          f"-> cost {100 * (1 - cpu_on / cpu_off):+.1f}%  (wall {wall_on:,.0f}/s vs "
          f"{wall_off:,.0f}/s -> {100 * (1 - wall_on / wall_off):+.1f}%)  rounds per-cpu "
          f"with={[round(p.per_cpu) for p in on]} stubbed={[round(p.per_cpu) for p in off]}")
    per_send_us = 1e6 / cpu_on
    cost = recording_cost_us()
    print(f"recording calls: {cost:.2f} us per send of {per_send_us:.0f} us CPU per send = "
          f"{100 * cost / per_send_us:.2f}%  [target < 3%]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pin_self(LOAD_CPU)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

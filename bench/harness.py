"""What the benchmarks share: servers started on loopback (optionally pinned to one core with
taskset), readiness, RSS, and medians/ratios. Imported by the bench_*.py scripts."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUN = BENCH / "bun" / "node_modules" / ".bin" / "bun"  # npm install into bench/bun (see README)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def pin_self(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class Server:
    """relayd, the bare aiohttp baseline, or the seed's Bun stack, as a subprocess."""

    def __init__(self, kind: str, tmp: Path, cpu: int | None = None,
                 env: dict[str, str] | None = None, cmd: list[str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = tmp / f"{kind}-{self.port}.db"
        (tmp / "empty.toml").write_text("")
        full_env = {
            **os.environ, "PORT": str(self.port), "DB_PATH": str(self.db_path),
            "AGENT_RELAY_SOCKET": str(tmp / f"{kind}-{self.port}.sock"),
            "AGENT_RELAY_CONFIG": str(tmp / "empty.toml"), "AGENT_RELAY_LOG_LEVEL": "warning",
            "AGENT_RELAY_SSE_QUEUE_SIZE": "5000", **(env or {}),
        }
        if cmd is not None:
            pass
        elif kind == "relayd":
            cmd = [sys.executable, "-m", "relayd.main"]
        elif kind == "bare":
            cmd = [sys.executable, str(BENCH / "bare_server.py"), str(self.port)]
        elif kind == "bun":
            cmd = [str(BUN), str(BENCH / "bun_server.js"), str(self.port), str(self.db_path)]
        else:
            raise ValueError(kind)
        self.proc = subprocess.Popen(pinned(cmd, cpu), env=full_env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    async def wait_ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
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
        proc = psutil.Process(self.proc.pid)
        if proc.name() == "taskset":  # taskset execs, so this is rare; be safe
            proc = proc.children()[0]
        return proc.memory_info().rss / 2**20

    def db_mib(self) -> float:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{self.db_path}{suffix}")
            if path.exists():
                total += path.stat().st_size
        return total / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]

"""Clients that attack a relay's resources over raw sockets, shared by the tests and
bench/bench_hostile.py: unfinished oversized header blocks, trickled headers, SSE readers
that resume from event 0 and never read. Loopback only, bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def health_seconds(url: str) -> float:
    """How long GET /api/health takes on a fresh connection (5 s at most)."""
    start = time.monotonic()
    limit = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession() as http, http.get(url + "/api/health", timeout=limit) as r:
        assert r.status == 200, await r.text()
    return time.monotonic() - start


async def oversized_header(url: str, total: int = 6 * 1024 * 1024) -> str:
    """Send an unfinished header block of `total` bytes (never the blank line). What the relay
    did: "431" (answered and closed), "closed" (closed; an answer the client had not read is
    lost to the reset) or "open" (still holding the connection 5 s later)."""
    reader, writer = await asyncio.open_connection(*address(url))
    piece = b"X-Junk: " + b"a" * 60_000 + b"\r\n"  # under the 64 KiB line limit
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = 0
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        answer = await asyncio.wait_for(reader.read(4096), 5)
    except ConnectionError:
        return "closed"
    except TimeoutError:
        return "open"
    finally:
        writer.close()
    return "431" if b" 431 " in answer.split(b"\r\n", 1)[0] else "closed"


async def trickled_header(url: str, seconds: float, gap: float = 0.2) -> tuple[bytes, float]:
    """Send a request head one header at a time, `gap` apart, for up to `seconds`; the
    relay's answer and how long the connection lived."""
    reader, writer = await asyncio.open_connection(*address(url))
    start = time.monotonic()
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer = b""
    try:
        while time.monotonic() - start < seconds:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(4096), gap)
            except TimeoutError:
                continue
            break
    except ConnectionError:
        pass
    finally:
        writer.close()
    return answer, time.monotonic() - start


def stalled_sse_reader(url: str, last_event_id: int = 0) -> socket.socket:
    """GET /api/events resuming after `last_event_id`, with a tiny receive buffer, and never
    read: the relay must not buffer the replay for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address(url))
    sock.sendall(
        b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        b"Last-Event-ID: " + str(last_event_id).encode() + b"\r\n\r\n"
    )
    return sock


async def fill_event_log(url: str, messages: int, body_bytes: int,
                         headers: dict[str, str] | None = None) -> None:
    """`messages` broadcast messages of `body_bytes` each: an event log to replay."""
    body = "x" * body_bytes
    async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem, http.post("/api/messages", json={
                "from": "filler", "to": "broadcast", "body": body, "meta": {"n": i},
            }) as resp:
                assert resp.status == 201, await resp.text()

        await asyncio.gather(*(one(i) for i in range(messages)))


async def sse_connections(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/stats") as resp:
        count: int = json.loads(await resp.text())["sse"]["connections"]
        return count

"""Hostile clients against a real relayd over raw sockets: oversized and trickled request
heads, stalled request bodies, and SSE readers that resume from event 0 and never read. The
daemon's RSS (from /proc) stays bounded, /api/health stays fast, and the attackers are
disconnected. Timeouts are shortened through the settings so the test stays quick."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import RelaydProcess
from tests.hostile_clients import (
    fill_event_log,
    health_seconds,
    oversized_header,
    rss_mib,
    sse_connections,
    stalled_sse_reader,
    trickled_header,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")

FAST = {
    "AGENT_RELAY_HEADER_TIMEOUT_SECONDS": "1",
    "AGENT_RELAY_STALL_TIMEOUT_SECONDS": "2",
}


def pid_of(relay: RelaydProcess) -> int:
    assert relay.proc is not None
    return relay.proc.pid


async def test_oversized_and_trickled_heads_are_cut_off(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process(env=FAST)
    url = relay.url or ""
    before = rss_mib(pid_of(relay))
    # 100 unfinished 6 MB header blocks, 30 heads trickled a header every 0.2 s
    big = [asyncio.ensure_future(oversized_header(url)) for _ in range(100)]
    slow = [asyncio.ensure_future(trickled_header(url, seconds=8)) for _ in range(30)]
    await asyncio.sleep(0.5)
    assert await health_seconds(url) < 1.0
    answers = await asyncio.gather(*big)
    assert "open" not in answers, answers
    trickled = await asyncio.gather(*slow)
    for answer, lived in trickled:
        assert b" 408 " in answer.split(b"\r\n", 1)[0], answer
        assert lived < 4, lived  # 1 s timeout, checked four times a second, plus load
    peak = rss_mib(pid_of(relay))
    assert peak - before < 64, (before, peak)
    # a connection that never sends anything is closed too, and a body that stops arriving
    idle = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    idle.settimeout(5)
    start = time.monotonic()
    assert idle.recv(100) == b"" and time.monotonic() - start < 4
    idle.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"POST /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 100\r\n\r\n{")
    start = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 8) == b""
    assert time.monotonic() - start < 5
    writer.close()
    assert await health_seconds(url) < 1.0
    print(f"\nRSS {before:.1f} MiB before, {peak:.1f} MiB after the header attack")
    assert "Traceback" not in relay.stderr, relay.stderr


async def test_stalled_sse_replay_readers_stay_bounded_and_are_dropped(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process(env=FAST)
    url = relay.url or ""
    await fill_event_log(url, messages=400, body_bytes=60_000)  # ~24 MB of event log
    before = rss_mib(pid_of(relay))
    readers = [stalled_sse_reader(url, 0) for _ in range(20)]
    try:
        peak = before
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            peak = max(peak, rss_mib(pid_of(relay)))
        assert await health_seconds(url) < 1.0
        assert peak - before < 100, (before, peak)
        # nothing they were sent drains for 2 s: the relay closes them
        deadline = time.monotonic() + 10
        while await sse_connections(url) and time.monotonic() < deadline:  # noqa: ASYNC110 polls another process: no Event reaches into relayd
            await asyncio.sleep(0.25)
        assert await sse_connections(url) == 0
    finally:
        for sock in readers:
            sock.close()
    # a reader that disconnects mid-replay is not an error
    for _ in range(5):
        sock = stalled_sse_reader(url, 0)
        sock.recv(1000)
        sock.close()
    await asyncio.sleep(0.5)
    assert await health_seconds(url) < 1.0
    print(f"\nRSS {before:.1f} MiB before, {peak:.1f} MiB peak with 20 stalled replay readers")
    assert "ERROR" not in relay.stderr and "Traceback" not in relay.stderr, relay.stderr


@pytest.mark.parametrize("event_loop", ["default", "asyncio"])
async def test_running_out_of_descriptors_logs_one_line_not_tracebacks(
    relayd_process: Callable[..., RelaydProcess], event_loop: str,
) -> None:
    """uvloop (the default) drops what it cannot accept without telling the loop; asyncio's
    loop reports each failed accept(): both end in one line."""
    import resource

    env = {"AGENT_RELAY_EVENT_LOOP": event_loop} if event_loop != "default" else {}
    relay = relayd_process(env)
    pid = pid_of(relay)
    maps = await asyncio.to_thread(Path(f"/proc/{pid}/maps").read_text)
    assert ("uvloop" in maps) == (event_loop == "default")  # the loop we meant to test
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    assert soft == hard or soft >= 65536, (soft, hard)  # relayd raised its soft limit
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, hard))  # now starve it
    port = int((relay.url or "").rsplit(":", 1)[1])
    held = []
    try:
        for _ in range(150):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        await asyncio.sleep(3)  # asyncio retries accept() once a second
    finally:
        for sock in held:
            sock.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await health_seconds(relay.url or "") < 2.0
            break
        except (TimeoutError, OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    lines = [line for line in relay.stderr.splitlines() if "cannot accept" in line]
    assert len(lines) == 1, relay.stderr
    assert "Traceback" not in relay.stderr, relay.stderr

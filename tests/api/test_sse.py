"""/api/events: framing, order, ?for= filtering, keep-alive, Last-Event-ID resume, slow
consumers and shutdown, against a real relay."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from relayd.bus import LocalBus
from relayd.daemon.relay import Relay
from tests.helpers import register


@dataclass
class SseEvent:
    id: int | None
    type: str
    data: Any


class SseReader:
    """Parses the text/event-stream of one response into events and comments."""

    def __init__(self, lines: Callable[[], Any]) -> None:
        self._readline = lines
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0) -> SseEvent | None:
        """The next event; None at the end of the stream."""
        fields: dict[str, str] = {}
        while True:
            raw = await asyncio.wait_for(self._readline(), timeout)
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif fields:
                event_id = int(fields["id"]) if "id" in fields else None
                return SseEvent(event_id, fields.get("event", ""), json.loads(fields["data"]))

    async def take(self, count: int, timeout: float = 5.0) -> list[SseEvent]:
        events: list[SseEvent] = []
        for _ in range(count):
            event = await self.next(timeout)
            assert event is not None, f"stream ended after {len(events)} of {count} events"
            events.append(event)
        return events

    async def until_quiet(self, quiet: float = 0.3) -> list[SseEvent]:
        events: list[SseEvent] = []
        while True:
            try:
                event = await self.next(quiet)
            except TimeoutError:
                return events
            if event is None:
                return events
            events.append(event)


@asynccontextmanager
async def sse(
    http: aiohttp.ClientSession, last_event_id: int | None = None, **params: str
) -> AsyncIterator[SseReader]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with http.get("/api/events", params=params, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield SseReader(resp.content.readline)


async def send(http: aiohttp.ClientSession, to: str, body: str = "hi", **extra: Any) -> int:
    resp = await http.post("/api/messages", json={"from": "ci", "to": to, "body": body, **extra})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def latest_event_id(http: aiohttp.ClientSession) -> int:
    return int((await (await http.get("/api/stats")).json())["events"]["latestId"])


async def test_event_order_and_ids(http: aiohttp.ClientSession) -> None:
    async with sse(http) as stream:
        await register(http, "bob", tags=["t"])
        message_id = await send(http, "tag:t", claimable=True)
        await http.post(f"/api/messages/{message_id}/claim", json={"agent": "bob"})
        await http.delete(f"/api/messages/{message_id}")
        await http.delete("/api/agents/bob")
        events = await stream.take(5)
    assert [e.type for e in events] == [
        "agent.status",
        "message.new",
        "message.claimed",
        "message.deleted",
        "agent.removed",
    ]
    ids = [e.id for e in events if e.id is not None]
    assert len(ids) == len(events)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[0].data["id"] == "bob" and events[0].data["status"] == "online"
    assert events[1].data["id"] == message_id and events[1].data["body"] == "hi"
    assert events[2].data == {"id": message_id, "claimedBy": "bob"}
    assert events[3].data == {"id": message_id}
    assert events[4].data == {"id": "bob"}


async def test_for_filters_to_what_the_agent_should_see(http: aiohttp.ClientSession) -> None:
    await register(http, "bob", tags=["team"])
    await register(http, "carol", tags=["team"])
    async with sse(http, None, **{"for": "bob"}) as bob, sse(http) as firehose:
        to_bob = await send(http, "bob", "for bob")
        await send(http, "carol", "for carol")
        to_team = await send(http, "tag:team", "for the team")
        await register(http, "dave")
        bob_events = await bob.until_quiet()
        all_events = await firehose.until_quiet()
    seen_by_bob = [(e.type, e.data.get("id")) for e in bob_events]
    assert seen_by_bob == [
        ("message.new", to_bob),
        ("message.new", to_team),
        ("agent.status", "dave"),
    ]
    assert [e.type for e in all_events].count("message.new") == 3


async def test_bad_for_is_400(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/api/events", params={"for": "bad id"})
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_request"


async def test_keep_alive_comment(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(sse_keepalive_seconds=0.2)
    async with (
        aiohttp.ClientSession(base_url=relay.url) as http,
        http.get("/api/events") as resp,
    ):
        started, lines = time.monotonic(), []
        while time.monotonic() - started < 0.7:
            lines.append(await asyncio.wait_for(resp.content.readline(), 2))
    comments = [line for line in lines if line.startswith(b":")]
    assert comments[0] == b": connected\n"
    assert len([c for c in comments if b"keep-alive" in c]) >= 2
    assert all(line.startswith(b":") or line == b"\n" for line in lines), "comments only"


async def test_keep_alive_also_under_steady_traffic(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(sse_keepalive_seconds=0.3)
    async with aiohttp.ClientSession(base_url=relay.url) as http, sse(http) as stream:
        await register(http, "bob")
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await send(http, "bob")
            await asyncio.sleep(0.05)
        await stream.until_quiet(0.05)
    assert len([c for c in stream.comments if "keep-alive" in c]) >= 2


async def test_resume_after_a_burst_without_gaps_or_duplicates(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "bob")
    async with sse(http) as stream:
        first = [await send(http, "bob", f"before {i}") for i in range(3)]
        seen = await stream.take(3)
    assert [e.data["id"] for e in seen] == first
    last_id = seen[-1].id
    assert last_id is not None
    missed = await asyncio.gather(*(send(http, "bob", f"missed {i}") for i in range(100)))
    async with sse(http, last_event_id=last_id) as stream:
        replayed = await stream.take(100)
        live = await send(http, "bob", "live")
        after = await stream.take(1)
        assert await stream.until_quiet(0.3) == []
    ids = [e.id for e in replayed + after]
    assert ids == list(range(last_id + 1, last_id + 102)), "contiguous: no gap, no duplicate"
    assert sorted(e.data["id"] for e in replayed) == sorted(missed)
    assert after[0].data["id"] == live


async def test_resume_while_events_keep_flowing(http: aiohttp.ClientSession) -> None:
    """Events committed during the replay are sent once, after the replayed ones."""
    await register(http, "bob")
    start = await latest_event_id(http)
    await asyncio.gather(*(send(http, "bob", f"old {i}") for i in range(200)))

    async def keep_sending() -> None:
        for i in range(50):
            await send(http, "bob", f"new {i}")

    async with sse(http, last_event_id=start) as stream:
        sender = asyncio.create_task(keep_sending())
        events = await stream.take(250)
        await sender
        assert await stream.until_quiet(0.3) == []
    assert [e.id for e in events] == list(range(start + 1, start + 251))


async def test_resume_with_for_replays_only_that_agents_events(
    http: aiohttp.ClientSession,
) -> None:
    await register(http, "bob")
    await register(http, "carol")
    start = await latest_event_id(http)
    mine = [await send(http, "bob", "b1"), await send(http, "bob", "b2")]
    await send(http, "carol", "c1")
    async with sse(http, last_event_id=start, **{"for": "bob"}) as stream:
        events = await stream.until_quiet()
    assert [e.data["id"] for e in events] == mine


async def test_invalid_last_event_id_means_live_only(http: aiohttp.ClientSession) -> None:
    await register(http, "bob")
    await send(http, "bob", "old")
    for header in ("abc", "²", "9" * 40, "-1"):
        async with http.get("/api/events", headers={"Last-Event-ID": header}) as resp:
            assert resp.status == 200
            reader = SseReader(resp.content.readline)
            fresh = await send(http, "bob", "new")
            event = await reader.next()
            assert event is not None and event.data["id"] == fresh


async def test_last_event_id_from_the_future_does_not_hide_new_events(
    http: aiohttp.ClientSession,
) -> None:
    """A client that kept an id across a database reset still gets every new event."""
    await register(http, "bob")
    async with sse(http, last_event_id=10_000) as stream:
        fresh = await send(http, "bob", "after the reset")
        event = await stream.next()
    assert event is not None and event.data["id"] == fresh


async def _raw_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An HTTP/1.0 SSE client with a tiny receive buffer that we can stop reading."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
    writer.write(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status
    while (await reader.readline()).strip():
        pass
    return reader, writer


async def test_slow_consumer_does_not_slow_others_and_loses_nothing(
    relay_factory: Any,
) -> None:
    relay: Relay = await relay_factory(sse_queue_size=20)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "bob")
        start = await latest_event_id(http)
        slow_reader, slow_writer = await _raw_stream(relay.url)
        count, body = 300, "x" * 30_000  # ~9 MB: far more than the socket buffers hold
        async with sse(http) as fast:
            await asyncio.sleep(0.1)
            started = time.monotonic()
            for _batch in range(count // 50):
                await asyncio.gather(*(send(http, "bob", body) for _ in range(50)))
            fast_events = await fast.take(count, timeout=10)
            fast_elapsed = time.monotonic() - started
        assert [e.id for e in fast_events] == list(range(start + 1, start + count + 1))
        assert fast_elapsed < 15
        assert isinstance(relay.ctx.bus, LocalBus)
        subscriptions = relay.ctx.bus._subscriptions  # the bound that keeps memory flat
        assert all(len(s._buffer) <= 20 for s in subscriptions)
        assert any(s.overflowed for s in subscriptions), "the slow stream fell behind"

        slow = SseReader(slow_reader.readline)
        slow_events = await slow.take(count, timeout=10)
        assert [e.id for e in slow_events] == list(range(start + 1, start + count + 1))
        slow_writer.close()


async def test_streams_end_when_the_relay_stops(relay_factory: Any) -> None:
    relay: Relay = await relay_factory()
    async with aiohttp.ClientSession(base_url=relay.url) as http, sse(http) as stream:
        await register(http, "bob")
        assert (await stream.take(1))[0].type == "agent.status"
        stopping = asyncio.create_task(relay.stop())
        assert await stream.next(timeout=5) is None
        await asyncio.wait_for(stopping, 10)

"""Server-Sent Events: framing, keep-alive, Last-Event-ID replay and lag recovery.

Order of work for one stream: subscribe to the bus first, then replay from the durable log, then
forward live events, skipping any id already sent. A subscriber that overflows its bounded
buffer catches up from the log the same way, so a slow reader loses nothing and costs no one
else memory or time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from aiohttp import HttpVersion11, web

from relayd.daemon.context import Context
from relayd.domain.models import Event

REPLAY_PAGE = 500
# Memory per stream stays bounded in bytes, not only in events: a replay page stops at this
# much event JSON, and frames are written (each write waits for the socket to drain) in pieces
# of about WRITE_CHUNK. A reader that stops reading altogether is closed by the connection
# watchdog (relayd/http/server.py) once nothing it was sent has drained for a while.
REPLAY_PAGE_BYTES = 256 * 1024
WRITE_CHUNK = 64 * 1024
DIRECT_WRITE_LIMIT = 64 * 1024  # bytes unsent on the socket before we stop writing directly


def frame_of(event: Event) -> bytes:
    """The event's SSE frame, encoded once however many streams send it."""
    frame = event.wire
    if frame is None:
        payload = event.data_json or json.dumps(event.data, separators=(",", ":"))
        frame = event.wire = f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()
    return frame


class EventStream:
    def __init__(self, ctx: Context, response: web.StreamResponse, reader: str | None) -> None:
        self.ctx = ctx
        self.response = response
        self.reader = reader
        self.last_sent = 0
        self.transport: asyncio.Transport | None = None  # set when direct writes are safe

    def write_direct(self, event: Event) -> bool:
        """Write a live event from the publisher itself, without waking this stream's task.

        With a thousand open streams, a task wake-up per stream per event dominated delivery
        latency. Only used while the task is parked (so no aiohttp write is in progress) on
        a chunked HTTP/1.1 response, hence the chunk framing written here. A reader whose
        socket backs up gets False: the event is buffered and the task's own path (and, past
        the buffer, catch-up from the log) takes over.
        """
        transport = self.transport
        if event.id <= self.last_sent:
            return True
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        frame = frame_of(event)
        transport.write(b"%x\r\n%b\r\n" % (len(frame), frame))
        self.last_sent = event.id
        return True

    def accepts(self, event: Event) -> bool:
        return event.visible_to(self.reader)

    async def run(self, resume_after: int | None, live_from: int) -> None:
        """`live_from`: the latest event id read before the answer's headers went out, so
        nothing a client does once it sees them can be skipped as "already sent"."""
        bus = self.ctx.bus
        subscription = bus.subscribe(self.accepts, self.ctx.settings.sse_queue_size)
        subscription.direct = self.write_direct
        try:
            await self.response.write(b": connected\n\n")
            # an id from before a database reset must not hide the new events
            start = live_from if resume_after is None else min(resume_after, live_from)
            await self.catch_up(start)  # also what committed before we subscribed
            keepalive = self.ctx.settings.sse_keepalive_seconds
            clock = asyncio.get_running_loop().time
            comment_due = clock() + keepalive  # also under steady traffic, for idle timers
            while not subscription.closed and not self.ctx.stopping.is_set():
                batch = await subscription.next_batch(max(0.0, comment_due - clock()))
                if subscription.overflowed:
                    subscription.reset_overflow()
                    await self.catch_up(self.last_sent)
                elif batch:
                    await self.send(batch)
                if clock() >= comment_due and not subscription.closed:
                    await self.response.write(b": keep-alive\n\n")
                    comment_due = clock() + keepalive
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            bus.unsubscribe(subscription)

    async def catch_up(self, after_id: int) -> None:
        self.last_sent = max(self.last_sent, after_id)
        while True:
            page = await self.ctx.store.events_after(
                self.last_sent, REPLAY_PAGE, max_bytes=REPLAY_PAGE_BYTES, reader=self.reader
            )
            if not page:
                return
            await self.send(page, advance_over_hidden=True)
            del page  # before the next read: one page per stream in memory at a time
            if self.ctx.stopping.is_set():
                return

    async def send(self, events: Iterable[Event], advance_over_hidden: bool = False) -> None:
        chunks: list[bytes] = []
        size = 0
        start = newest = self.last_sent
        for event in events:
            if event.id <= start:
                continue
            newest = max(newest, event.id)
            if self.accepts(event):
                frame = frame_of(event)
                chunks.append(frame)
                size += len(frame)
                if size >= WRITE_CHUNK:  # write and drain before encoding more
                    await self.response.write(b"".join(chunks))
                    chunks, size = [], 0
                    self.last_sent = newest
        if chunks:
            await self.response.write(b"".join(chunks))
            self.last_sent = newest
        elif advance_over_hidden:
            self.last_sent = newest


def resume_point(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    raw = None if raw is None else raw.strip()
    if not raw or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


async def open_stream(request: web.Request, ctx: Context, reader: str | None) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    chunked = request.version == HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    live_from = await ctx.store.latest_event_id()
    await response.prepare(request)
    stream = EventStream(ctx, response, reader)
    if chunked and request.transport is not None:  # uvloop's transports are not subclasses
        stream.transport = request.transport
    ctx.sse_connections += 1
    try:
        await stream.run(resume_point(request), live_from)
    finally:
        ctx.sse_connections -= 1
    return response

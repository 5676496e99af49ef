"""Serve an aiohttp request with an ASGI application (the MCP SDK's streamable HTTP transport),
so MCP shares relayd's port, middleware, auth and limits instead of running a second server.

The request body is read by aiohttp first (so `client_max_size` applies and a too-large body is
the relay's JSON 413); the ASGI app then sees one `http.request` message, and `http.disconnect`
once the client goes away or the relay stops. What the app sends is streamed back through an
aiohttp `StreamResponse`: the headers as soon as the app starts its answer, the body chunks as
they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("relayd.mcp")
DISCONNECT_POLL_SECONDS = 0.5  # how often a waiting `receive` checks the connection


class ASGIProtocolError(RuntimeError):
    """The ASGI app broke the protocol (a body before its start, two starts)."""


def scope_for(request: web.Request, extra: dict[str, Any] | None = None) -> Scope:
    """The ASGI HTTP connection scope of an aiohttp request."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    sock = transport.get_extra_info("sockname") if transport is not None else None
    url = request.rel_url
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": url.raw_path.encode("latin-1", "replace"),
        "query_string": url.raw_query_string.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
        **(extra or {}),
    }


async def _until_gone(request: web.Request, stopping: asyncio.Event | None) -> None:
    """Return once the client's connection is closed or the relay is stopping."""
    while stopping is None or not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        if stopping is None:
            await asyncio.sleep(DISCONNECT_POLL_SECONDS)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), DISCONNECT_POLL_SECONDS)


class _Exchange:
    """One request answered by an ASGI app: its receive/send callables and what was sent."""

    def __init__(self, request: web.Request, body: bytes, stopping: asyncio.Event | None
                 ) -> None:
        self.request = request
        self.body: bytes | None = body
        self.stopping = stopping
        self.response: web.StreamResponse | None = None
        self.finished = False

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await _until_gone(self.request, self.stopping)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body":
            await self._write(message)

    async def _start(self, message: Message) -> None:
        if self.response is not None:
            raise ASGIProtocolError("the response was already started")
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in message.get("headers", ()):
            headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        self.response = web.StreamResponse(status=int(message["status"]), headers=headers)
        await self.response.prepare(self.request)  # now: a stream's headers must not wait

    async def _write(self, message: Message) -> None:
        if self.response is None:
            raise ASGIProtocolError("a response body was sent before its start")
        if self.finished:
            return
        chunk = bytes(message.get("body", b""))
        if chunk:
            await self.response.write(chunk)
        if not message.get("more_body", False):
            self.finished = True
            await self.response.write_eof()

    async def finish(self) -> web.StreamResponse:
        if self.response is None:
            raise ASGIProtocolError("the ASGI app sent no response")
        if not self.finished:
            with contextlib.suppress(ConnectionResetError):
                await self.response.write_eof()
        return self.response


async def serve(
    app: ASGIApp,
    request: web.Request,
    *,
    extra_scope: dict[str, Any] | None = None,
    stopping: asyncio.Event | None = None,
) -> web.StreamResponse:
    """Answer `request` with `app`; `extra_scope` keys are added to the ASGI scope."""
    exchange = _Exchange(request, await request.read(), stopping)
    try:
        await app(scope_for(request, extra_scope), exchange.receive, exchange.send)
    except* ConnectionResetError:  # the client left mid-answer: nothing more to tell it
        pass
    except* Exception:
        if exchange.response is None or not exchange.response.prepared:
            raise  # the relay's error middleware answers
        log.exception("the ASGI app failed after answering %s %s", request.method, request.path)
    return await exchange.finish()

"""The HTTP connection layer under the aiohttp app: bounded request heads, a head timeout,
stalled connections closed, and JSON answers for what aiohttp's own parser refuses.

aiohttp bounds each header line and the number of headers, but a client may take forever to
send them and a hundred unfinished 6 MB header blocks held gigabytes. Each connection here
counts the bytes of the request head it is receiving and refuses (431) a head over
`max_header_bytes`; one watchdog task per server looks at every connection about four times
per timeout and closes:

- a connection whose request head has not arrived `header_timeout_seconds` after it opened
  (or after the head's first byte, on a kept-alive connection): 408;
- a request whose body stopped arriving for `stall_timeout_seconds`;
- a connection whose unsent answer (an SSE stream included) has not shrunk for
  `stall_timeout_seconds`: a reader that stopped reading.

Idle kept-alive connections are closed by aiohttp after KEEPALIVE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("relayd.http")

KEEPALIVE_SECONDS = 75.0
_STATUS_CODES = {400: "invalid_request", 413: "payload_too_large"}


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 128 * 1024
    header_timeout_seconds: float = 10.0
    stall_timeout_seconds: float = 30.0


def raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer, for a connection we close before aiohttp has a
    request to answer on."""
    body = json.dumps({"error": message, "code": code}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedRequestHandler(RequestHandler):
    """One client connection, with the bookkeeping the watchdog reads."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.limits = manager.limits
        self.head_since: float | None = None  # receiving a request head since (loop time)
        self.head_bytes = 0
        self.body: StreamReader | None = None  # the last request's body stream
        self.last_read = 0.0
        self.unsent = 0  # write buffer size at the last look, and since when it has not shrunk
        self.unsent_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.head_since = self.last_read = self._loop.time()

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        now = self._loop.time()
        self.last_read = now
        body = self.body
        if self.head_since is None and (body is None or body.is_eof()):
            self.head_since, self.head_bytes = now, 0
        if self.head_since is not None:
            end = data.find(b"\r\n\r\n")
            self.head_bytes += len(data) if end < 0 else end
            if self.head_bytes > self.limits.max_header_bytes:
                self.refuse(raw_error(
                    431, "Request Header Fields Too Large", "invalid_request",
                    f"the request head is over {self.limits.max_header_bytes} bytes",
                ))
                return
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a head is complete: its body may follow
            self.head_since = None
            self.body = self._messages[-1][1] if self._messages else None

    def refuse(self, answer: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
        self.force_close()

    def watch(self, now: float) -> None:
        """Close this connection if it has broken one of the limits (the watchdog's tick)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        limits = self.limits
        if self.head_since is not None and now - self.head_since > limits.header_timeout_seconds:
            if self.head_bytes or self._request_count:
                self.refuse(raw_error(
                    408, "Request Timeout", "invalid_request",
                    f"the request head did not arrive within {limits.header_timeout_seconds:g} s",
                ))
            else:
                self.force_close()  # opened and never used: nobody to answer
            return
        body = self.body
        stalled = now - self.last_read > limits.stall_timeout_seconds
        if body is not None and not body.is_eof() and stalled:
            log.info("closing a connection whose request body stopped arriving")
            transport.abort()
            return
        unsent = transport.get_write_buffer_size()
        if unsent == 0 or self.unsent == 0 or unsent < self.unsent:  # idle, new, or drained
            self.unsent, self.unsent_since = unsent, now
        elif now - self.unsent_since > limits.stall_timeout_seconds:
            log.info("closing a connection that stopped reading (%d bytes unsent)", unsent)
            transport.abort()
        else:
            self.unsent = unsent

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A client's malformed request: no traceback in our log, the contract's JSON answer."""
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.debug("refused a malformed request from %s: %s", request.remote, exc)
        reason = getattr(exc, "message", None) or message or "malformed request"
        payload = {"error": f"malformed request: {str(reason).strip()[:200]}",
                   "code": _STATUS_CODES.get(status, "invalid_request")}
        response = web.Response(status=status, text=json.dumps(payload),
                                content_type="application/json")
        response.force_close()
        return response


class GuardedServer(web.Server):
    limits: ConnectionLimits

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections are GuardedRequestHandlers, plus their watchdog.

    `limits` is called on every watchdog tick, so reloaded settings apply to open
    connections too."""

    def __init__(
        self, app: web.Application, limits: Callable[[], ConnectionLimits], **kwargs: Any
    ) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_SECONDS)
        super().__init__(app, **kwargs)
        self._limits = limits
        self._watchdog: asyncio.Task[None] | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object and state; only __call__ differs
        assert isinstance(server, GuardedServer)
        server.limits = self._limits()
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(server))
        return server

    async def _watch(self, server: GuardedServer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            limits = server.limits = self._limits()
            shortest = min(limits.header_timeout_seconds, limits.stall_timeout_seconds)
            await asyncio.sleep(min(1.0, max(0.05, shortest / 4)))
            now = loop.time()
            for handler in server.connections:
                if isinstance(handler, GuardedRequestHandler):
                    handler.limits = limits
                    try:
                        handler.watch(now)
                    except Exception:  # never let one connection stop the watchdog
                        log.exception("connection watchdog")

    async def cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await super().cleanup()


def bound_address(site: web.TCPSite) -> tuple[str, int]:
    """The address a started site really listens on (port 0 means the OS chose)."""
    server = site._server
    assert server is not None  # an asyncio or a uvloop server: both have .sockets
    sock: socket.socket = server.sockets[0]  # type: ignore[attr-defined]
    host, port = sock.getsockname()[:2]
    return str(host), int(port)

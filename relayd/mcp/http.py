"""/mcp: the Model Context Protocol over streamable HTTP, on relayd's own port.

The request has been through relayd's middleware (errors, CORS, the Host/Origin checks, the
token → Principal) before it gets here; the handler hands it to the SDK's transport through the
ASGI bridge with the principal in the ASGI scope, and each tool checks its own scope.

The SDK costs more memory than the rest of relayd, so it is imported (in a thread, so the
event loop keeps serving) when /mcp is first used, not when relayd starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from functools import partial
from typing import Any

from aiohttp import web

from relayd.daemon.context import Context
from relayd.errors import unavailable
from relayd.http.auth import principal_of, requires
from relayd.mcp import asgi, relay_tools

log = logging.getLogger("relayd.mcp")
DRAIN_SECONDS = 3.0  # how long a stopping relay waits for MCP calls in flight


class McpEndpoint:
    """The SDK's session manager, started on first use and stopped with the relay."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._app: asgi.ASGIApp | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise unavailable("the relay is shutting down")
        self._inflight += 1
        self._idle.clear()
        try:
            app = await self.app()
            if self._closing:  # it stopped while the SDK was loading
                raise unavailable("the relay is shutting down")
            return await asgi.serve(
                app,
                request,
                extra_scope={relay_tools.PRINCIPAL_SCOPE_KEY: principal_of(request)},
                stopping=self.ctx.stopping,
            )
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    @property
    def started(self) -> bool:
        return self._app is not None

    async def app(self) -> asgi.ASGIApp:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await self._start()
        return self._app

    async def _start(self) -> asgi.ASGIApp:
        try:
            server = await asyncio.to_thread(importlib.import_module, "relayd.mcp.server")
        except ImportError as exc:
            raise unavailable(f"MCP is not available here: {exc} (install the mcp package)"
                              ) from None
        manager = server.http_session_manager(
            partial(relay_tools.call, self.ctx), self.ctx.settings.max_body_bytes
        )
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(manager, started), name="mcp")
        await started
        log.info("MCP: serving /mcp (SDK loaded)")
        handle: asgi.ASGIApp = manager.handle_request
        return handle

    async def _run(self, manager: Any, started: asyncio.Future[None]) -> None:
        """Hold the manager's task group open (it must be entered and left in one task)."""
        try:
            async with manager.run():
                started.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP session manager stopped: %s", exc)

    async def close(self) -> None:
        """Refuse new calls, let the ones in flight answer (long polls and streams end on
        `ctx.stopping`), then stop the transport."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), DRAIN_SECONDS)
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None


async def on_shutdown(app: web.Application) -> None:
    """Stop the MCP transport, if it ever started, when the HTTP server shuts down: after the
    relay has ended long polls and streams, so the calls in flight can still answer."""
    await app[MCP].close()


@requires(None)  # any valid token; each tool checks the scope it needs
async def handle(request: web.Request) -> web.StreamResponse:
    return await request.app[MCP].serve(request)


MCP: web.AppKey[McpEndpoint] = web.AppKey("mcp", McpEndpoint)

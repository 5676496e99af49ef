"""The HTTP API on its TCP port: the app on the guarded runner, started and stopped by the
Relay, and the address it really listens on."""

from __future__ import annotations

from aiohttp import web

from relayd.daemon.context import Context
from relayd.errors import StartupError
from relayd.http.app import create_app
from relayd.http.server import ConnectionLimits, GuardedAppRunner, bound_address

SHUTDOWN_TIMEOUT = 5.0
MAX_REQUEST_LINE = 64 * 1024


class HttpListener:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def connection_limits(self) -> ConnectionLimits:
        """Read per connection, so a reload's limits apply to the next connection."""
        settings = self.ctx.settings
        return ConnectionLimits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            stall_timeout_seconds=settings.stall_timeout_seconds,
        )

    async def start(self) -> None:
        # Generous request-line/header limits: aiohttp's own 8 KiB refusal is plain text, so a
        # long query string should reach our validators and get the JSON 400 instead.
        self.runner = GuardedAppRunner(
            create_app(self.ctx),
            limits=self.connection_limits,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
        )
        await self.runner.setup()
        settings = self.ctx.settings
        site = web.TCPSite(self.runner, settings.host, settings.port, backlog=1024,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
                " (is another relayd running? choose another port with --port or PORT)"
            ) from None
        self.address = bound_address(site)

    async def stop(self) -> None:
        """Close the listener and the open connections (SSE streams end first, on
        ctx.stopping and the bus closing), with SHUTDOWN_TIMEOUT of grace."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

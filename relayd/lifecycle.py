"""Start order: storage → bus → HTTP → reaper → (control, notify); stop in reverse.

``Relay`` owns every long-lived part of the daemon. Tests start one in-process; ``relayd``
starts one under signal handling.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relayd import __version__, pairs_service
from relayd.app import Route, create_app
from relayd.bus import LocalBus
from relayd.context import Context
from relayd.reaper import Reaper
from relayd.settings import Settings
from relayd.storage.sqlite import SQLiteStore

log = logging.getLogger("relayd")
Hook = Callable[["Relay"], Awaitable[None]]
SHUTDOWN_TIMEOUT = 5.0


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.ctx = Context(
            settings=settings,
            store=SQLiteStore(settings.db_path),
            bus=LocalBus(settings.sse_queue_size),
        )
        self.reaper = Reaper(self.ctx)
        pairs_service.install(self)
        self.extra_routes: list[Route] = []
        self.start_hooks: list[Hook] = []  # run after HTTP serves, in order
        self.stop_hooks: list[Hook] = []  # run first at stop, in reverse order
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def start(self) -> None:
        await self.ctx.store.open(self.ctx.bus.publish)
        try:
            await self._serve_http()
        except Exception:
            await self.ctx.store.close()
            raise
        self.reaper.start()
        for hook in self.start_hooks:
            await hook(self)
        log.info(
            "relayd %s serving on %s (database %s)", __version__, self.url, self.ctx.store.location
        )

    async def _serve_http(self) -> None:
        app = create_app(self.ctx, self.extra_routes)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, self.settings.host, self.settings.port, backlog=1024, reuse_address=True
        )
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise StartupError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}"
                " (is another relayd running? choose another port with --port or PORT)"
            ) from None
        self.address = _bound_address(site)

    async def stop(self) -> None:
        """Stop accepting, end SSE streams and long-polls, finish writes, close storage."""
        self.ctx.stopping.set()
        for hook in reversed(self.stop_hooks):
            try:
                await hook(self)
            except Exception as exc:
                log.warning("stop hook failed: %s", exc)
        self.ctx.bus.close_all()
        await self.reaper.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.ctx.store.close()
        log.info("relayd stopped")

    def apply_settings(self, settings: Settings) -> list[str]:
        """Take reloadable settings live (SIGHUP / control reload); returns what changed."""
        old = self.ctx.settings
        fixed = ("host", "port", "db_path", "socket_path")
        changed = [
            name
            for name in settings.__dataclass_fields__
            if getattr(old, name) != getattr(settings, name)
        ]
        ignored = [name for name in changed if name in fixed]
        if ignored:
            log.warning("reload: %s need a restart to change", ", ".join(ignored))
        keep: dict[str, Any] = {name: getattr(old, name) for name in fixed}
        from relayd.settings import replace

        self.ctx.settings = replace(settings, **keep)
        return [name for name in changed if name not in fixed]


def _bound_address(site: web.TCPSite) -> tuple[str, int]:
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    sock: socket.socket = server.sockets[0]
    host, port = sock.getsockname()[:2]
    return str(host), int(port)

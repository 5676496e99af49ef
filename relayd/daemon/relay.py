"""Start order: instance guard → storage (publishing to the bus) → HTTP → reaper → start hooks
→ channels → control plane → notify; stop in reverse.

``Relay`` owns every long-lived part of the daemon. Tests start one in-process; ``relayd``
starts one under signal handling.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from relayd import __version__
from relayd.bus import LocalBus
from relayd.channels import build_channels
from relayd.config import settings as settings_mod
from relayd.config.settings import Settings
from relayd.control.server import ControlServer
from relayd.daemon import pairs_service, tasks_service
from relayd.daemon.context import Context
from relayd.daemon.instance import InstanceGuard
from relayd.daemon.jobs import Reaper
from relayd.daemon.notify import Notifier
from relayd.daemon.process_limits import unauthenticated_bind_warning
from relayd.domain.models import Event
from relayd.errors import StartupError
from relayd.http.app import Route, create_app
from relayd.http.server import ConnectionLimits, GuardedAppRunner, bound_address
from relayd.storage import open_store

log = logging.getLogger("relayd")
Hook = Callable[["Relay"], Awaitable[None]]
SHUTDOWN_TIMEOUT = 5.0
MAX_REQUEST_LINE = 64 * 1024


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.ctx = Context(
            settings=settings,
            store=open_store(settings),
            bus=LocalBus(settings.sse_queue_size),
        )
        self.reaper = Reaper(self.ctx)
        self.ctx.channels = build_channels(self.ctx)
        pairs_service.install(self)
        self.extra_routes: list[Route] = []
        self.start_hooks: list[Hook] = []  # run after HTTP serves, in order
        self.stop_hooks: list[Hook] = []  # run first at stop, in reverse order
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None
        tasks_service.install(self)  # after the hook lists: it adds the callback worker
        self.guard = InstanceGuard(settings)
        self.control = ControlServer(self)
        self.notifier = Notifier()
        self.settings_source: Callable[[], Settings] | None = None  # what reload re-reads

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    async def start(self) -> None:
        self.guard.acquire()  # before anything touches the socket or the database
        if self.guard.socket_path != self.settings.socket_path:
            log.info("the default control socket belongs to another relayd; using %s",
                     self.guard.socket_path)
            self.ctx.settings = settings_mod.replace(
                self.settings, socket_path=self.guard.socket_path
            )
        try:
            await self._open_storage()
            try:
                await self._serve_http()
            except Exception:
                await self.ctx.store.close()
                raise
        except BaseException:
            self.guard.release()
            raise
        self.reaper.start()
        for hook in self.start_hooks:
            await hook(self)
        await self._start_channels()
        try:
            await self.control.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "relayd %s serving on %s (database %s)", __version__, self.url, self.ctx.store.location
        )
        warning = unauthenticated_bind_warning(self.settings)
        if warning is not None:
            log.warning(warning)
        self.notifier.start(self.status_line())

    async def _start_channels(self) -> None:
        """Configured channels start in the background; one that fails to start is logged
        and reported in GET /api/channels, never a reason for relayd not to serve."""
        for channel in self.ctx.channels:
            if not channel.configured:
                continue
            try:
                await channel.start()
            except Exception as exc:
                log.warning("channel %s did not start: %s", channel.name, exc)
            else:
                log.info("channel %s started", channel.name)

    async def _stop_channels(self) -> None:
        for channel in reversed(self.ctx.channels):
            try:
                await channel.stop()
            except Exception as exc:
                log.warning("channel %s did not stop cleanly: %s", channel.name, exc)

    def _publish(self, events: Sequence[Event]) -> None:
        """Committed events: counted for /metrics, then fanned out."""
        self.ctx.metrics.events(events)
        self.ctx.bus.publish(events)

    async def _open_storage(self) -> None:
        self.ctx.store.on_commit = self.ctx.metrics.committed
        self.ctx.metrics.sse_connections = lambda: self.ctx.sse_connections
        try:
            await self.ctx.store.open(self._publish)
        except (OSError, sqlite3.Error) as exc:
            await self.ctx.store.close()
            raise StartupError(
                f"cannot open the database {self.settings.db_path}: {exc}"
                " (check that its directory exists and is writable, or choose another with --db)"
            ) from None

    def status_line(self) -> str:
        return f"serving {self.url}" if self.address else "starting"

    async def _serve_http(self) -> None:
        app = create_app(self.ctx, self.extra_routes)
        # Generous request-line/header limits: aiohttp's own 8 KiB refusal is plain text, so a
        # long query string should reach our validators and get the JSON 400 instead.
        self.runner = GuardedAppRunner(
            app,
            limits=self.connection_limits,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
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
        self.address = bound_address(site)

    def connection_limits(self) -> ConnectionLimits:
        settings = self.settings
        return ConnectionLimits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            stall_timeout_seconds=settings.stall_timeout_seconds,
        )

    async def stop(self) -> None:
        """Stop accepting, end SSE streams and long-polls, finish writes, close storage."""
        self.ctx.stopping.set()
        await self.notifier.stop()
        await self.control.stop()
        await self._stop_channels()
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
        self.guard.release()
        log.info("relayd stopped")

    def request_stop(self) -> None:
        """Stop soon, from inside a request (control /v1/shutdown)."""
        stop = self.ctx.extras.get("request_stop")
        if stop is not None:
            stop()
        else:  # in-process relays (tests) have no signal loop to wake
            self.ctx.extras["stop_task"] = asyncio.ensure_future(self.stop())

    def reload(self) -> list[str]:
        """Re-read the settings and apply what can change live; SettingsError keeps the old."""
        self.notifier.reloading()
        try:
            changed = self.apply_settings(self._read_settings())
        finally:
            self.notifier.ready(self.status_line())
        log.info("reloaded settings%s", f": {', '.join(changed)}" if changed else " (no change)")
        return changed

    def _read_settings(self) -> Settings:
        if self.settings_source is not None:
            return self.settings_source()
        config: Path | None = self.settings.config_path
        if config is None or not config.exists():
            return self.settings
        return settings_mod.load(config=config)

    def apply_settings(self, settings: Settings) -> list[str]:
        """Take reloadable settings live (SIGHUP / control reload); returns what changed."""
        old = self.ctx.settings
        fixed = (
            "host", "port", "db_path", "socket_path", "control_transport", "control_port",
            "telegram_bot_token", "telegram_chat_ids", "telegram_api_url",
        )
        changed = [
            name
            for name in settings.__dataclass_fields__
            if getattr(old, name) != getattr(settings, name)
        ]
        ignored = [name for name in changed if name in fixed]
        if ignored:
            log.warning("reload: %s need a restart to change", ", ".join(ignored))
        keep: dict[str, Any] = {name: getattr(old, name) for name in fixed}
        self.ctx.settings = settings_mod.replace(settings, **keep)
        return [name for name in changed if name not in fixed]

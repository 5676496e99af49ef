"""The assembly: every part of a running relay, built in one place and started in order.

`Relay(settings)` builds the parts (nothing runs yet); `start()` starts them in this order
and `stop()` stops them in reverse:

    instance guard → storage (publishing to the bus) → HTTP → reaper → callback worker
    → channels → control plane → systemd notify

Each part gets what it needs as arguments (mostly the shared Context); none sees the Relay.
Tests start one in-process; `relayd` starts one under signal handling (relayd/main.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relayd import __version__
from relayd.bus import LocalBus
from relayd.channels.base import Channel
from relayd.channels.telegram import TelegramChannel
from relayd.config import settings as settings_mod
from relayd.config.settings import Settings
from relayd.control.handlers import RelayActions
from relayd.control.server import ControlServer
from relayd.daemon.callbacks import CallbackWorker
from relayd.daemon.context import Context
from relayd.daemon.instance import InstanceGuard
from relayd.daemon.jobs import Reaper
from relayd.daemon.notify import Notifier
from relayd.daemon.process_limits import unauthenticated_bind_warning
from relayd.domain.models import Event
from relayd.errors import DatabaseUnreachable, StartupError
from relayd.http.listener import HttpListener
from relayd.storage import open_store
from relayd.storage.base import StoreUnreachable

log = logging.getLogger("relayd")


def build_channels(ctx: Context) -> list[Channel]:
    """The channel kinds relayd knows, in the order GET /api/channels lists them."""
    return [TelegramChannel(ctx)]


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.guard = InstanceGuard(settings)
        self.ctx = Context(
            settings=settings,
            store=open_store(settings),
            bus=LocalBus(settings.sse_queue_size),
        )
        self.ctx.channels = build_channels(self.ctx)
        self.http = HttpListener(self.ctx)
        self.reaper = Reaper(self.ctx)
        self.callbacks = CallbackWorker(self.ctx)
        actions = RelayActions(reload=self.reload, request_stop=self.request_stop)
        self.control = ControlServer(self.ctx, self.reaper, self.http, actions)
        self.notifier = Notifier()
        self.settings_source: Callable[[], Settings] | None = None  # what reload re-reads
        self.on_stop_request: Callable[[], None] | None = None  # relayd's signal loop
        self.stop_task: asyncio.Future[None] | None = None  # a stop requested in-process

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def address(self) -> tuple[str, int] | None:
        return self.http.address

    @property
    def url(self) -> str:
        return self.http.url

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
                await self.http.start()
            except Exception:
                await self.ctx.store.close()
                raise
        except BaseException:
            self.guard.release()
            raise
        self.reaper.start()
        await self.callbacks.start()
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
        if self.ctx.store.backend != "sqlite":
            log.info("replica %s on %s", self.ctx.replica_id, self.ctx.store.backend)
        self.notifier.start(self.status_line())

    async def stop(self) -> None:
        """Stop accepting, end SSE streams and long-polls, finish writes, close storage."""
        self.ctx.stopping.set()
        await self.notifier.stop()
        await self.control.stop()
        await self._stop_channels()
        try:
            await self.callbacks.stop()
        except Exception as exc:
            log.warning("callback worker did not stop cleanly: %s", exc)
        self.ctx.bus.close_all()
        await self.reaper.stop()
        await self.http.stop()
        await self.ctx.store.close()
        self.guard.release()
        log.info("relayd stopped")

    async def _open_storage(self) -> None:
        self.ctx.store.on_commit = self.ctx.metrics.committed
        self.ctx.metrics.sse_connections = lambda: self.ctx.sse_connections
        try:
            await self.ctx.store.open(self._publish)
        except StoreUnreachable as exc:
            await self.ctx.store.close()
            raise DatabaseUnreachable(
                f"cannot reach the database {self.ctx.store.location}: {exc}"
                " (is PostgreSQL running and DB_URL right?)"
            ) from None
        except OSError as exc:
            await self.ctx.store.close()
            raise StartupError(
                f"cannot open the database {self.ctx.store.location}: {exc}"
                " (check that its directory exists and is writable, or choose another with --db)"
            ) from None

    def _publish(self, events: Sequence[Event]) -> None:
        """Committed events: counted for /metrics, then fanned out."""
        self.ctx.metrics.events(events)
        self.ctx.bus.publish(events)

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

    def status_line(self) -> str:
        return f"serving {self.url}" if self.address else "starting"

    def request_stop(self) -> None:
        """Stop soon, from inside a request (control /v1/shutdown)."""
        if self.on_stop_request is not None:
            self.on_stop_request()
        else:  # in-process relays (tests) have no signal loop to wake
            self.stop_task = asyncio.ensure_future(self.stop())

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
            "host", "port", "db_path", "db_url", "socket_path", "control_transport",
            "control_port", "telegram_bot_token", "telegram_chat_ids", "telegram_api_url",
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

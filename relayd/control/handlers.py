"""The control plane's endpoints under /v1: status, reload, token rotation, prune, backup,
shutdown and logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil
from aiohttp import web

from relayd import __version__, private_files
from relayd.config import file as configfile
from relayd.config import paths
from relayd.config.settings import SettingsError, replace
from relayd.daemon import logring
from relayd.daemon.context import Context
from relayd.daemon.jobs import Reaper
from relayd.daemon.stats import collect_stats
from relayd.errors import ApiError, conflict, invalid, unavailable
from relayd.http.parsing import query_int, read_json

log = logging.getLogger("relayd.control")
MAX_LOG_LINES = 10_000


class Endpoint(Protocol):
    """Where the HTTP API listens (relayd.http.listener.HttpListener is one)."""

    address: tuple[str, int] | None

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class RelayActions:
    """What the control plane may ask of the running relay; the Relay hands these over."""

    reload: Callable[[], list[str]]  # re-read the settings; returns the names that changed
    request_stop: Callable[[], None]  # stop soon, after this answer is sent


class ControlHandlers:
    """The /v1 endpoints of one running relay; `where` says where the control plane listens."""

    def __init__(
        self,
        ctx: Context,
        reaper: Reaper,
        api: Endpoint,
        actions: RelayActions,
        where: Callable[[], str],
        ring: logring.LogRing,
    ) -> None:
        self.ctx = ctx
        self.reaper = reaper
        self.api = api
        self.actions = actions
        self.where = where
        self.ring = ring

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/reload", self.reload)
        app.router.add_post("/v1/token/rotate", self.rotate_token)
        app.router.add_post("/v1/prune", self.prune)
        app.router.add_post("/v1/backup", self.backup)
        app.router.add_post("/v1/shutdown", self.shutdown)
        app.router.add_get("/v1/logs", self.logs)

    async def status(self, request: web.Request) -> web.Response:
        ctx = self.ctx
        stats = await collect_stats(ctx)
        counts = {k: v for k, v in stats.items() if k not in ("version", "uptimeSeconds")}
        host, port = self.api.address or (ctx.settings.host, ctx.settings.port)
        settings = ctx.settings
        return web.json_response(
            {
                "pid": os.getpid(),
                "version": __version__,
                "python": sys.version.split()[0],
                "uptimeSeconds": ctx.uptime_seconds,
                "listen": {"host": host, "port": port, "url": self.api.url},
                "socket": self.where(),
                "control": {"transport": settings.control_transport, "address": self.where()},
                "configPath": str(settings.config_path) if settings.config_path else None,
                "logFile": str(settings.log_file) if settings.log_file else None,
                "database": {
                    "path": str(settings.db_path) if ctx.store.backend == "sqlite" else None,
                    **ctx.store.describe(),
                },
                "replica": {
                    "id": ctx.replica_id,
                    "backend": ctx.store.backend,
                    "jobs": ctx.store.held_jobs(),
                },
                "memory": {"rssBytes": psutil.Process().memory_info().rss},
                "connections": {"sse": ctx.sse_connections},
                "tokenRequired": settings.token is not None,
                "counts": counts,
            }
        )

    async def reload(self, request: web.Request) -> web.Response:
        try:
            changed = self.actions.reload()
        except SettingsError as exc:
            raise invalid(f"reload refused, the running settings are kept: {exc}") from None
        return web.json_response({"reloaded": True, "changed": changed})

    async def rotate_token(self, request: web.Request) -> web.Response:
        if os.environ.get("AGENT_RELAY_TOKEN"):
            raise conflict(
                "invalid_state",
                "the token comes from relayd's environment (AGENT_RELAY_TOKEN), which overrides"
                " the config file; change it there and restart",
            )
        settings = self.ctx.settings
        config = settings.config_path or paths.default_config_file()
        token = secrets.token_urlsafe(32)
        try:
            configfile.update(config, token=token)
        except SettingsError as exc:
            raise conflict("invalid_state", f"cannot rotate: {exc}") from None
        except OSError as exc:
            raise unavailable(f"cannot write {config}: {exc.strerror}") from None
        self.ctx.settings = replace(self.ctx.settings, token=token)
        log.info("admin token rotated and saved to %s", config)
        return web.json_response({"token": token, "configPath": str(config)})

    async def prune(self, request: web.Request) -> web.Response:
        results = await self.reaper.run_once(force_history=True)
        return web.json_response({"pruned": results})

    async def backup(self, request: web.Request) -> web.Response:
        """Online backup into a new file: written to a temp file opened O_CREAT|O_EXCL|
        O_NOFOLLOW (0600) next to the target, fsynced, then linked into place only if nothing
        is there (relayd/private_files.py): never through a symlink, never over a file."""
        destination = self._backup_destination((await read_json(request)).data)
        try:
            partial, fd = private_files.exclusive_temp(destination.parent, destination.name)
        except OSError as exc:
            raise invalid(f"cannot write backup to {destination}: {exc.strerror}") from None
        try:
            await self.ctx.store.backup(partial)
            # fsyncs of the file and its directory: off the event loop
            size = await asyncio.to_thread(_publish_backup, partial, fd, destination)
        except private_files.TargetExists:
            raise _backup_target_taken(destination) from None
        except OSError as exc:
            raise invalid(f"cannot write backup to {destination}: {exc.strerror}") from None
        finally:
            await asyncio.to_thread(_discard_partial, partial, fd)
        log.info("backup written to %s (%d bytes)", destination, size)
        return web.json_response({"path": str(destination), "sizeBytes": size})

    def _backup_destination(self, body: dict[str, Any]) -> Path:
        raw = body.get("path")
        if not isinstance(raw, str) or not raw.strip():
            raise invalid("path is required: an absolute file path for the backup")
        destination = Path(raw)
        if not destination.is_absolute():
            raise invalid(f"path must be absolute (relayd's working directory is not yours): {raw}")
        if destination.is_symlink():
            raise _backup_target_taken(destination)
        if destination.is_dir():
            raise invalid(f"path is a directory; give a file name: {raw}")
        if not destination.parent.is_dir():
            raise invalid(f"path's directory does not exist: {destination.parent}")
        if not os.access(destination.parent, os.W_OK):
            raise invalid(f"path's directory is not writable: {destination.parent}")
        database = self.ctx.settings.db_path
        if destination.resolve() in {database.resolve(), Path(f"{database}-wal").resolve()}:
            raise invalid("path is the live database itself; choose another file")
        if os.path.lexists(destination):
            raise _backup_target_taken(destination)
        return destination

    async def shutdown(self, request: web.Request) -> web.StreamResponse:
        response = web.json_response({"stopping": True, "pid": os.getpid()})
        await response.prepare(request)
        await response.write_eof()
        log.info("shutdown requested over the control socket")
        self.actions.request_stop()
        return response

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ring = self.ring
        n = query_int(request, "n", default=100, minimum=0, maximum=MAX_LOG_LINES) or 0
        if request.query.get("follow", "0").lower() not in ("1", "true", "yes"):
            return web.json_response({"lines": ring.tail(n)})
        return await self._follow_logs(request, ring, n)

    async def _follow_logs(
        self, request: web.Request, ring: logring.LogRing, n: int
    ) -> web.StreamResponse:
        recent, follower = ring.follow(n)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        stopping = asyncio.ensure_future(self.ctx.stopping.wait())
        try:
            await response.prepare(request)
            for line in recent:
                await response.write(f"{line}\n".encode())
            while not stopping.done():
                getter = asyncio.ensure_future(follower.queue.get())
                await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await response.write(f"{getter.result()}\n".encode())
        except ConnectionResetError:
            pass  # the reader went away
        finally:
            stopping.cancel()
            ring.unfollow(follower)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def _publish_backup(partial: Path, fd: int, destination: Path) -> int:
    """Link the finished backup into place; its size in bytes."""
    private_files.publish_exclusive(partial, fd, destination)
    return os.lstat(destination).st_size


def _discard_partial(partial: Path, fd: int) -> None:
    """Close the temp file and drop its name and SQLite's journal of it."""
    os.close(fd)
    for path in (partial, Path(f"{partial}-journal")):
        with contextlib.suppress(OSError):
            path.unlink()


def _backup_target_taken(destination: Path) -> ApiError:
    what = "a symbolic link" if destination.is_symlink() else "already there"
    return conflict(
        "invalid_state",
        f"backup refused: {destination} is {what}, and relayd never writes through a link or "
        "over a file it did not create; choose a new file name",
    )

"""The admin control plane: HTTP+JSON under /v1 on a private Unix socket, or loopback TCP.

Only the owning user may use it: the socket is 0600 in a 0700 directory, the peer's uid is
checked where the OS tells it (SO_PEERCRED), and requests carrying Origin or Referer are refused
so a web page cannot reach it through a browser. Where asyncio has no Unix sockets (Windows) the
same app listens on 127.0.0.1 and every request must carry a per-start token that relayd writes
only into its private listen.json: reading that file is what "only the owning user" means there.
relayd/instance.py makes sure a second relayd never takes over a live control plane or database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import struct
import sys
from pathlib import Path
from typing import Any, Protocol

import psutil
from aiohttp import web

from relayd import __version__, configfile, logring, paths, private_files
from relayd.api.stats import collect_stats
from relayd.context import Context
from relayd.errors import ApiError, StartupError, conflict, forbidden, invalid, unavailable
from relayd.http_errors import error_middleware
from relayd.http_server import bound_address
from relayd.instance import (
    UNIX_SOCKETS,
    VERSION_HEADER,
    read_listen_file,
)
from relayd.reaper import Reaper
from relayd.settings import Settings, SettingsError, replace, same_secret


class Relay(Protocol):
    """What the control plane uses of the running relay (relayd.lifecycle.Relay is one): the
    control plane sits beside the assembly, not above it, so it names no lifecycle module."""

    ctx: Context
    reaper: Reaper
    address: tuple[str, int] | None

    @property
    def settings(self) -> Settings: ...

    @property
    def url(self) -> str: ...

    def reload(self) -> list[str]: ...

    def request_stop(self) -> None: ...


log = logging.getLogger("relayd.control")

CONTROL_API_VERSION = "1"
API_HEADER = "X-Agent-Relay-Control-Api"
MAX_LOG_LINES = 10_000
CONTROL_SHUTDOWN_TIMEOUT = 1.0


def prepare_socket_dir(directory: Path) -> None:
    """Create the socket's directory 0700; never use one that belongs to someone else."""
    existed = directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not existed:
            os.chmod(directory, 0o700)
        info = directory.stat()
    except OSError as exc:
        raise StartupError(
            f"cannot create the control socket directory {directory}: {exc.strerror};"
            " choose another socket path with --socket"
        ) from None
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise StartupError(
            f"control socket directory {directory} belongs to another user (uid {info.st_uid});"
            " choose another socket path with --socket"
        )
    if sys.platform == "win32" or not info.st_mode & 0o077:  # Windows: ACLs, not mode bits
        return
    if _managed_runtime_dir(directory):
        # Ours but open to others (relayctl would ignore what we write there): make it 0700.
        os.chmod(directory, 0o700)
        log.warning("control socket directory %s was accessible to others; made it 0700",
                    directory)
    else:  # a directory the user chose (--socket): theirs to change
        log.warning("control socket directory %s is accessible to others; the socket itself"
                    " is 0600%s", directory, ", but relayctl ignores a listen.json in a"
                    " directory others can write" if info.st_mode & 0o022 else "")


def _managed_runtime_dir(directory: Path) -> bool:
    """The per-user runtime dir relayd uses by default (or a per-database one inside it)."""
    runtime = paths.runtime_dir()
    return runtime in (directory, directory.parent)


# ------------------------------------------------------------------------ request guard


def peer_uid(request: web.Request) -> int | None:
    """The connecting process's uid (Linux SO_PEERCRED), or None where the OS does not say."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    if sock.family != getattr(socket, "AF_UNIX", None):
        return None  # TCP peers have no credentials; the token guards that transport
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


@web.middleware
async def guard_middleware(
    request: web.Request, handler: Any
) -> web.StreamResponse:
    if "Origin" in request.headers or "Referer" in request.headers:
        raise forbidden("the control socket refuses browser requests (Origin/Referer present)")
    uid = peer_uid(request)
    if uid is not None and uid != os.getuid():
        raise forbidden(f"uid {uid} may not use this control socket; it belongs to uid "
                        f"{os.getuid()}")
    requested = request.headers.get(API_HEADER)
    if requested is not None and requested.strip() != CONTROL_API_VERSION:
        raise invalid(
            f"control API version {requested!r} is not supported: this relayd {__version__} "
            f"speaks version {CONTROL_API_VERSION}; upgrade relayctl and relayd to the same "
            "release"
        )
    response: web.StreamResponse = await handler(request)
    return response


def token_middleware(token: str) -> Any:
    """Every request on the TCP control port must carry relayd's per-start token."""

    @web.middleware
    async def check_token(request: web.Request, handler: Any) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not same_secret(given.strip(), token):
            raise ApiError(
                401,
                "unauthorized",
                "the control port needs `Authorization: Bearer <token>` with the token from "
                "relayd's listen.json",
            )
        response: web.StreamResponse = await handler(request)
        return response

    return check_token


async def _add_version_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[VERSION_HEADER] = __version__


# ------------------------------------------------------------------------ the server


class ControlServer:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.runner: web.AppRunner | None = None
        self.path: Path | None = None
        self.tcp_port: int | None = None
        self.token: str | None = None
        self._listen_file_written = False
        self.ring = logring.install()  # relayd installs it earlier; in-process relays here

    @property
    def listen_file(self) -> Path:
        return paths.listen_file_for(self.relay.settings.socket_path)

    @property
    def address(self) -> str:
        """Where the control plane listens, as relayctl status shows it."""
        if self.tcp_port is not None:
            return f"tcp://{paths.CONTROL_HOST}:{self.tcp_port}"
        return str(self.path)

    async def start(self) -> None:
        if self.relay.settings.control_transport == "tcp":
            await self._start_tcp()
        elif UNIX_SOCKETS:
            await self._start_unix()
        else:
            raise StartupError(
                "control_transport unix needs Unix sockets, which asyncio does not have on this"
                " platform; set control_transport = \"tcp\" (the default here)"
            )

    async def _setup_runner(self) -> web.AppRunner:
        self.runner = web.AppRunner(
            self._make_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=CONTROL_SHUTDOWN_TIMEOUT,
        )
        await self.runner.setup()
        return self.runner

    async def _start_tcp(self) -> None:
        prepare_socket_dir(self.listen_file.parent)  # listen.json holds the token: keep it 0700
        self.token = secrets.token_urlsafe(32)
        port = self.relay.settings.control_port
        site = web.TCPSite(await self._setup_runner(), paths.CONTROL_HOST, port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(
                f"cannot listen on control port {paths.CONTROL_HOST}:{port}: {exc.strerror}"
                " (choose another with control_port / AGENT_RELAY_CONTROL_PORT, or 0 for any)"
            ) from None
        self.tcp_port = bound_address(site)[1]
        self._write_listen_file()
        log.info("control port %s:%d (token in %s)", paths.CONTROL_HOST, self.tcp_port,
                 self.listen_file)

    async def _start_unix(self) -> None:
        path = self.relay.settings.socket_path
        prepare_socket_dir(path.parent)
        await self._setup_runner()
        assert self.runner is not None
        try:
            await web.UnixSite(self.runner, str(path)).start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            raise StartupError(f"cannot listen on control socket {path}: {exc.strerror}") from None
        self.path = path
        os.chmod(path, 0o600)
        self._write_listen_file()
        log.info("control socket %s", path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.path is not None:
            # Python before 3.13 leaves the socket file behind
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None
        self._remove_listen_file()
        self.tcp_port = self.token = None

    def _remove_listen_file(self) -> None:
        if not self._listen_file_written:
            return  # never another relay's (in-process test relays share our pid)
        record = read_listen_file(self.listen_file)
        if record is not None and record.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.listen_file.unlink()
        self._listen_file_written = False

    def _make_app(self) -> web.Application:
        middlewares = [error_middleware, guard_middleware]
        if self.token is not None:
            middlewares.append(token_middleware(self.token))
        app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
        app.on_response_prepare.append(_add_version_header)
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/reload", self.reload)
        app.router.add_post("/v1/token/rotate", self.rotate_token)
        app.router.add_post("/v1/prune", self.prune)
        app.router.add_post("/v1/backup", self.backup)
        app.router.add_post("/v1/shutdown", self.shutdown)
        app.router.add_get("/v1/logs", self.logs)
        return app

    def _control_record(self) -> dict[str, Any]:
        if self.tcp_port is None:
            return {"transport": "unix", "socket": str(self.path)}
        return {
            "transport": "tcp",
            "host": paths.CONTROL_HOST,
            "port": self.tcp_port,
            "token": self.token,
        }

    def _write_listen_file(self) -> None:
        record = {
            "pid": os.getpid(),
            "version": __version__,
            "socket": str(self.path) if self.path is not None else None,
            "control": self._control_record(),
            "url": self.relay.url,
            "host": self.relay.address[0] if self.relay.address else None,
            "port": self.relay.address[1] if self.relay.address else None,
            "database": str(self.relay.settings.db_path),
        }
        tmp = self.listen_file.with_name(f".{paths.LISTEN_FILENAME}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # created 0600, never briefly readable: on the TCP transport it holds the token
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | private_files.NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.listen_file)
        self._listen_file_written = True

    # -------------------------------------------------------------------- handlers

    async def status(self, request: web.Request) -> web.Response:
        relay, ctx = self.relay, self.relay.ctx
        stats = await collect_stats(ctx)
        counts = {k: v for k, v in stats.items() if k not in ("version", "uptimeSeconds")}
        host, port = relay.address or (relay.settings.host, relay.settings.port)
        settings = ctx.settings
        return web.json_response(
            {
                "pid": os.getpid(),
                "version": __version__,
                "python": sys.version.split()[0],
                "uptimeSeconds": ctx.uptime_seconds,
                "listen": {"host": host, "port": port, "url": relay.url},
                "socket": self.address,
                "control": {"transport": settings.control_transport, "address": self.address},
                "configPath": str(settings.config_path) if settings.config_path else None,
                "logFile": str(settings.log_file) if settings.log_file else None,
                "database": {"path": str(settings.db_path), "sizeBytes": ctx.store.file_size()},
                "memory": {"rssBytes": psutil.Process().memory_info().rss},
                "connections": {"sse": ctx.sse_connections},
                "tokenRequired": settings.token is not None,
                "counts": counts,
            }
        )

    async def reload(self, request: web.Request) -> web.Response:
        try:
            changed = self.relay.reload()
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
        settings = self.relay.settings
        config = settings.config_path or paths.default_config_file()
        token = secrets.token_urlsafe(32)
        try:
            configfile.update(config, token=token)
        except SettingsError as exc:
            raise conflict("invalid_state", f"cannot rotate: {exc}") from None
        except OSError as exc:
            raise unavailable(f"cannot write {config}: {exc.strerror}") from None
        self.relay.ctx.settings = replace(self.relay.settings, token=token)
        log.info("admin token rotated and saved to %s", config)
        return web.json_response({"token": token, "configPath": str(config)})

    async def prune(self, request: web.Request) -> web.Response:
        results = await self.relay.reaper.run_once(force_history=True)
        return web.json_response({"pruned": results})

    async def backup(self, request: web.Request) -> web.Response:
        """Online backup into a new file: written to a temp file opened O_CREAT|O_EXCL|
        O_NOFOLLOW (0600) next to the target, fsynced, then linked into place only if nothing
        is there (relayd/private_files.py): never through a symlink, never over a file."""
        destination = self._backup_destination(await _json_object(request))
        try:
            partial, fd = private_files.exclusive_temp(destination.parent, destination.name)
        except OSError as exc:
            raise invalid(f"cannot write backup to {destination}: {exc.strerror}") from None
        try:
            await self.relay.ctx.store.backup(partial)
            private_files.publish_exclusive(partial, fd, destination)
        except private_files.TargetExists:
            raise _backup_target_taken(destination) from None
        except OSError as exc:
            raise invalid(f"cannot write backup to {destination}: {exc.strerror}") from None
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                partial.unlink()
            with contextlib.suppress(OSError):
                Path(f"{partial}-journal").unlink()
        size = os.lstat(destination).st_size
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
        database = self.relay.settings.db_path
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
        self.relay.request_stop()
        return response

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ring = self.ring
        n = _int_param(request, "n", 100, 0, MAX_LOG_LINES)
        if request.query.get("follow", "0").lower() not in ("1", "true", "yes"):
            return web.json_response({"lines": ring.tail(n)})
        return await self._follow_logs(request, ring, n)

    async def _follow_logs(
        self, request: web.Request, ring: logring.LogRing, n: int
    ) -> web.StreamResponse:
        recent, follower = ring.follow(n)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        stopping = asyncio.ensure_future(self.relay.ctx.stopping.wait())
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


def _backup_target_taken(destination: Path) -> ApiError:
    what = "a symbolic link" if destination.is_symlink() else "already there"
    return conflict(
        "invalid_state",
        f"backup refused: {destination} is {what}, and relayd never writes through a link or "
        "over a file it did not create; choose a new file name",
    )


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "invalid_json", "body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    return body


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value

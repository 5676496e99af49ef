"""The admin control plane: HTTP+JSON under /v1 on a private Unix socket, or loopback TCP.

Only the owning user may use it: the socket is 0600 in a 0700 directory, the peer's uid is
checked where the OS tells it (SO_PEERCRED), and requests carrying Origin or Referer are refused
so a web page cannot reach it through a browser. Where asyncio has no Unix sockets (Windows) the
same app listens on 127.0.0.1 and every request must carry a per-start token that relayd writes
only into its private listen.json: reading that file is what "only the owning user" means there.
relayd/daemon/instance.py makes sure a second relayd never takes over a live control plane or
database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from relayd import __version__, private_files
from relayd.config import paths
from relayd.control.guard import (
    add_version_header,
    guard_middleware,
    prepare_socket_dir,
    token_middleware,
)
from relayd.control.handlers import ControlHandlers, Endpoint, RelayActions
from relayd.daemon import logring
from relayd.daemon.context import Context
from relayd.daemon.instance import UNIX_SOCKETS, read_listen_file
from relayd.daemon.jobs import Reaper
from relayd.errors import StartupError
from relayd.http.errors import error_middleware
from relayd.http.server import bound_address

log = logging.getLogger("relayd.control")
CONTROL_SHUTDOWN_TIMEOUT = 1.0

# ------------------------------------------------------------------------ the server


class ControlServer:
    def __init__(
        self, ctx: Context, reaper: Reaper, api: Endpoint, actions: RelayActions
    ) -> None:
        self.ctx = ctx
        self.reaper = reaper
        self.api = api
        self.actions = actions
        self.runner: web.AppRunner | None = None
        self.path: Path | None = None
        self.tcp_port: int | None = None
        self.token: str | None = None
        self._listen_file_written = False
        self.ring = logring.install()  # relayd installs it earlier; in-process relays here

    @property
    def listen_file(self) -> Path:
        return paths.listen_file_for(self.ctx.settings.socket_path)

    @property
    def address(self) -> str:
        """Where the control plane listens, as relayctl status shows it."""
        if self.tcp_port is not None:
            return f"tcp://{paths.CONTROL_HOST}:{self.tcp_port}"
        return str(self.path)

    async def start(self) -> None:
        if self.ctx.settings.control_transport == "tcp":
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
        port = self.ctx.settings.control_port
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
        path = self.ctx.settings.socket_path
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
        app.on_response_prepare.append(add_version_header)
        handlers = ControlHandlers(
            self.ctx, self.reaper, self.api, self.actions, lambda: self.address, self.ring
        )
        handlers.add_routes(app)
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
            "url": self.api.url,
            "host": self.api.address[0] if self.api.address else None,
            "port": self.api.address[1] if self.api.address else None,
            "database": self.ctx.store.location,
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


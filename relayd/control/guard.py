"""Who may use the control plane: the owner's uid (SO_PEERCRED), no browser requests, the
same control API version, and on the TCP transport the per-start token; the socket directory
is created 0700 and never one that belongs to someone else."""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from relayd import __version__
from relayd.config import paths
from relayd.config.settings import same_secret
from relayd.daemon.instance import VERSION_HEADER
from relayd.errors import ApiError, StartupError, forbidden, invalid

log = logging.getLogger("relayd.control")

CONTROL_API_VERSION = "1"
API_HEADER = "X-Agent-Relay-Control-Api"


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


async def add_version_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[VERSION_HEADER] = __version__


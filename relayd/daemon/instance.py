"""One relayd per control plane and database.

``InstanceGuard`` runs before anything touches the socket or the database: it probes the
control socket (a live one means another relayd; only a refused connection means a stale file),
asks a recorded TCP control port, and holds an exclusive ``flock`` on ``<db>.lock`` for the
daemon's life. A relayd of another database that finds the *default* socket taken moves to a
per-database socket instead of refusing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from relayd import private_files
from relayd.config import paths
from relayd.config.settings import Settings
from relayd.errors import StartupError

try:
    import fcntl
except ImportError:  # Windows: no flock; the socket probe still guards
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("relayd.instance")

VERSION_HEADER = "X-Agent-Relay-Version"  # every control answer carries it, even a 401
PROBE_TIMEOUT = 2.0
UNIX_SOCKETS = hasattr(socket, "AF_UNIX") and sys.platform != "win32"


class InstanceGuard:
    """Refuses to start next to a live relayd: same socket or control port (probe) or same
    database (flock)."""

    def __init__(self, settings: Settings) -> None:
        self.socket_path = settings.socket_path
        self.transport = settings.control_transport
        self.lock_path = paths.lock_file_for(settings.db_path)
        self._lock_fd: int | None = None
        # Only the default socket moves aside; an explicitly chosen one is never shared.
        self._movable = settings.socket_path == paths.default_socket_path()
        self._db_path = settings.db_path

    def acquire(self) -> None:
        taken = UNIX_SOCKETS and self.transport == "unix" and self._movable
        if taken and socket_is_live(self.socket_path):
            # Another relayd holds the default socket. If it serves our database, the
            # database lock below still refuses us; otherwise we take our own socket.
            self.socket_path = paths.instance_socket_path(self._db_path)
        if UNIX_SOCKETS:
            if self.transport == "unix":
                check_socket_path_length(self.socket_path)
            probe_socket(self.socket_path)
        probe_control_port(paths.listen_file_for(self.socket_path))
        self._lock_database()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _lock_database(self) -> None:
        if fcntl is None:
            return
        try:
            private_files.make_private_dir(self.lock_path.parent)  # the data directory, 0700
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | private_files.NOFOLLOW, 0o600)
        except OSError as exc:
            raise StartupError(
                f"cannot use the data directory {self.lock_path.parent}: {exc.strerror}"
                " (create it or make it writable, or choose another database with --db)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StartupError(
                f"relayd is already running (pid {pid}, database {self.lock_path.with_suffix('')})"
                "; stop it first (relayctl daemon stop) or use another --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return str(int(os.read(fd, 32).decode().strip()))
    return "unknown"


def check_socket_path_length(path: Path) -> None:
    size = len(os.fsencode(path))
    if size >= paths.MAX_SOCKET_PATH:
        raise StartupError(
            f"control socket path is too long ({size} bytes; this OS allows "
            f"{paths.MAX_SOCKET_PATH - 1}): {path}; choose a shorter one with --socket or "
            "AGENT_RELAY_SOCKET"
        )


def socket_is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def probe_socket(path: Path) -> None:
    """A live socket means another relayd: refuse. Only a refused connection means stale."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; move it away or use --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        log.info("removing stale control socket %s (no relayd behind it)", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    except FileNotFoundError:
        return
    except PermissionError:
        raise StartupError(
            f"cannot use control socket {path}: permission denied (owned by uid "
            f"{os.lstat(path).st_uid}); choose another with --socket"
        ) from None
    except OSError:
        pass  # it exists and did not refuse (e.g. timed out): treat it as live
    finally:
        probe.close()
    raise StartupError(
        f"relayd is already running (pid {_pid_behind(path)}, socket {path});"
        " use `relayctl status`, or stop it with `relayctl daemon stop`"
    )


def probe_control_port(listen_file: Path) -> None:
    """A listen.json naming a TCP control port where relayd still answers: refuse."""
    record = read_listen_file(listen_file) or {}
    control = record.get("control")
    if not isinstance(control, dict) or control.get("transport") != "tcp":
        return
    port = control.get("port")
    if not isinstance(port, int) or not _relayd_answers(port):
        return
    raise StartupError(
        f"relayd is already running (pid {record.get('pid', 'unknown')}, control port "
        f"{paths.CONTROL_HOST}:{port}); use `relayctl status`, or stop it with "
        "`relayctl daemon stop`"
    )


def _relayd_answers(port: int) -> bool:
    """No token needed: even relayd's 401 carries its version header; a port now taken by
    another program does not."""
    conn = http.client.HTTPConnection(paths.CONTROL_HOST, port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", "/v1/status")
        return conn.getresponse().getheader(VERSION_HEADER) is not None
    except TimeoutError:
        return True  # it accepted and stays silent: a stuck relayd is still a relayd
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _pid_behind(socket_path: Path) -> str:
    record = read_listen_file(paths.listen_file_for(socket_path))
    if record and record.get("socket") == str(socket_path):
        return str(record.get("pid", "unknown"))
    return "unknown"


def read_listen_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

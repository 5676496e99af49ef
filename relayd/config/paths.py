"""Where Agent Relay keeps its files, per platform (platformdirs).

relayd and relayctl both resolve paths here so that they agree. The control socket lives in a
short, private directory: macOS caps AF_UNIX paths at 104 bytes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import platformdirs

APP_NAME = "agent-relay"
CONFIG_FILENAME = "config.toml"
DB_FILENAME = "relay.db"
SOCKET_FILENAME = "relayd.sock"
LISTEN_FILENAME = "listen.json"
CONTROL_HOST = "127.0.0.1"  # the TCP control plane listens here and nowhere else
MAX_SOCKET_PATH = 104 if sys.platform == "darwin" else 108


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    return config_dir() / CONFIG_FILENAME


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_db_path() -> Path:
    return data_dir() / DB_FILENAME


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def runtime_dir() -> Path:
    """A private per-user directory for the control socket.

    XDG_RUNTIME_DIR when the session has one; otherwise a per-uid folder in the temp dir, so
    that relayctl run from cron or sudo -u finds the same path as the daemon.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / APP_NAME
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = "/tmp" if sys.platform != "win32" else tempfile.gettempdir()
    return Path(base) / f"{APP_NAME}-{uid}"


def default_socket_path() -> Path:
    return runtime_dir() / SOCKET_FILENAME


def instance_socket_path(db_path: Path) -> Path:
    """Where a relayd goes when the default socket already belongs to a relayd of another
    database: one private folder per database, so relays of different databases coexist."""
    resolved = str(Path(db_path).expanduser().resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:10]
    return runtime_dir() / f"db-{digest}" / SOCKET_FILENAME


def listen_file_for(socket_path: Path) -> Path:
    """relayd records where it listens next to the socket path, for either transport."""
    return socket_path.parent / LISTEN_FILENAME


def listen_file_candidates(socket_path: Path | None = None) -> list[Path]:
    """Where a running relayd may have recorded where it listens, most likely first.

    relayd writes listen.json next to its socket. A relayctl run without XDG_RUNTIME_DIR (cron,
    sudo -u) also looks in the usual per-user runtime dirs, so both sides meet again.
    """
    dirs = [socket_path.parent] if socket_path is not None else []
    dirs.append(runtime_dir())
    if hasattr(os, "getuid"):
        dirs.append(Path(f"/run/user/{os.getuid()}") / APP_NAME)
        dirs.append(Path("/tmp") / f"{APP_NAME}-{os.getuid()}")
    unique = list(dict.fromkeys(dirs))
    return [d / LISTEN_FILENAME for d in unique]


def lock_file_for(db_path: Path) -> Path:
    """The single-instance lock next to the database."""
    return Path(f"{db_path}.lock")


def default_log_file() -> Path:
    return log_dir() / "relayd.log"

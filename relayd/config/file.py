"""Writing the TOML config file: atomically (temp file + os.replace) and private (0600).

relayd (token rotation) and relayctl (setup, token rotate) both write through here, so a crash
or a full disk never leaves a half-written config behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from relayd.config.settings import read_toml


def read(path: Path) -> dict[str, Any]:
    """The file's settings ({} when absent); SettingsError when it is broken."""
    return read_toml(path, required=False)


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as TOML in one step; the file is readable only by us."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = tomli_w.dumps(_plain(data))
    # mkstemp creates the file with mode 0600 before anything is written to it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def update(path: Path, **changes: Any) -> dict[str, Any]:
    """Read, change the given keys, write back atomically; returns the new contents."""
    data = read(path)
    data.update(changes)
    write_atomic(path, data)
    return data


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}

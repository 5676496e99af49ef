"""relayctl trusts only what the user owns.

A listen.json or control socket tells relayctl where to send requests, and on the TCP control
transport which token to send: one planted by another local user (in a shared /tmp fallback
directory, say) would receive our admin token. So relayctl uses such a file only when the file
and its directory belong to the user running relayctl and are not writable by group or
others; anything else is ignored with a one-line warning on stderr.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from relayctl.terminal import escape

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_warned: set[str] = set()


def _uid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None  # Windows: ACLs guard the files


def _owner_problem(info: os.stat_result, what: str, uid: int) -> str | None:
    if info.st_uid != uid:
        return f"{what} belongs to uid {info.st_uid}, not to you (uid {uid})"
    if info.st_mode & 0o022:
        return f"{what} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def directory_problem(directory: Path) -> str | None:
    uid = _uid()
    if uid is None:
        return None
    try:
        info = os.stat(directory)
    except OSError:
        return None  # nothing there: nothing to trust or to distrust
    return _owner_problem(info, f"its directory {directory}", uid)


def path_problem(path: Path) -> str | None:
    """Why ``path`` (not followed) and its directory are not the user's own; None if they are
    (or if ``path`` does not exist)."""
    uid = _uid()
    if uid is None:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    return _owner_problem(info, "it", uid) or directory_problem(path.parent)


def warn_ignored(path: Path, problem: str) -> None:
    """One line per file and process: what is ignored and why."""
    key = str(path)
    if key in _warned:
        return
    _warned.add(key)
    print(escape(f"relayctl: warning: ignoring {path}: {problem}", keep_newlines=False),
          file=sys.stderr, flush=True)


def trusted(path: Path) -> bool:
    """True when ``path`` may be used (also when it does not exist); warns when it may not."""
    problem = path_problem(path)
    if problem is not None:
        warn_ignored(path, problem)
        return False
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file the user owns in a directory the user owns, else None.

    Opened without following a symlink, and checked on the open descriptor, so the file read
    is the file checked."""
    uid = _uid()
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError:
        if uid is not None and os.path.islink(path):
            warn_ignored(path, "it is a symbolic link")
        return None
    with os.fdopen(fd, "rb") as fh:
        if uid is not None:
            problem = _owner_problem(os.fstat(fh.fileno()), "it", uid) or directory_problem(
                path.parent)
            if problem is not None:
                warn_ignored(path, problem)
                return None
        try:
            data = json.loads(fh.read(1024 * 1024))
        except (OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None


def warn_if_token_exposed(config: Path | None) -> None:
    """One line (once per process) when the config file holds a token others can read."""
    from relayd.config.settings import exposed_token_warning

    warning = exposed_token_warning(config)
    if warning and "token-file" not in _warned:
        _warned.add("token-file")
        print(escape(f"relayctl: warning: {warning}", keep_newlines=False), file=sys.stderr,
              flush=True)

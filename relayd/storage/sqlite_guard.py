"""Storage honesty: is the database file we opened still the one at its path, and writable?

SQLite keeps writing to a file that was deleted or replaced under it (the open descriptor
still points at the old inode), so without this check a relay would answer 201 for writes that
vanish at the next restart. ``DatabaseFileGuard.problem()`` compares the path's ``stat`` with
the identity recorded at open (device and inode of the database and of its WAL) and looks at
the write bits. The writer runs it around each group commit, not once per request: one ``stat``
before the commit and two after it (a few microseconds against a commit's fsync).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

Identity = tuple[int, int]  # (st_dev, st_ino)


class DatabaseFileGuard:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.wal_path = Path(f"{path}-wal")
        self._db_str, self._wal_str = str(path), str(self.wal_path)
        self._db: Identity | None = None
        self._wal: Identity | None = None
        self._euid = os.geteuid() if hasattr(os, "geteuid") else None

    def arm(self) -> None:
        """Record the identity of the files just opened (call right after opening them)."""
        self._db = _identity(self.path)
        self._wal = _identity(self.wal_path)

    def problem(self, after_commit: bool = False) -> str | None:
        """None when the opened database is still in place and writable; else why not.

        Before a commit: the database file (one ``stat``: there, the same inode, writable).
        After it (``after_commit``): the database and its WAL are still the files written to
        (two ``stat`` calls), so no write that went into a deleted file is acknowledged."""
        if self._db is None:
            return None  # not armed (not opened yet)
        try:
            info = os.stat(self._db_str)
        except FileNotFoundError:
            return f"the database file {self.path} was deleted while relayd runs"
        except OSError as exc:
            return f"the database file {self.path} cannot be checked: {exc.strerror}"
        if (info.st_dev, info.st_ino) != self._db:
            return (f"the database file {self.path} was replaced by another file while relayd"
                    " runs (restart relayd to use the new one)")
        if not after_commit:
            if self._writable(info):
                return None
            return f"the database file {self.path} is not writable"
        return self._wal_problem()

    def _wal_problem(self) -> str | None:
        try:
            info = os.stat(self._wal_str)
        except FileNotFoundError:
            if self._wal is None:
                return None  # no WAL yet (it appears with the first write)
            return f"the database's WAL file {self.wal_path} was deleted while relayd runs"
        except OSError:
            return None
        identity = (info.st_dev, info.st_ino)
        if self._wal is None:
            self._wal = identity
        elif identity != self._wal:
            return f"the database's WAL file {self.wal_path} was replaced while relayd runs"
        return None

    def _writable(self, info: os.stat_result) -> bool:
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            return False
        if self._euid is None:  # Windows: the read-only attribute clears every write bit
            return bool(mode & stat.S_IWRITE)
        if self._euid == 0:  # root ignores modes; a file with no write bit at all is a "no"
            return bool(mode & 0o222)
        if info.st_uid == self._euid:
            return bool(mode & stat.S_IWUSR)
        return os.access(self.path, os.W_OK)


def _identity(path: Path) -> Identity | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)

"""Files only the owning user may read: directories 0700, files 0600, never through a symlink.

relayd's data directory, database (SQLite gives its WAL and SHM the database's mode), logs and
backups, and the files relayctl writes, are created here. Backups are published with
``link()``, which never replaces what is already at the target (a file or a planted symlink):
a backup never overwrites a file it did not create.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
POSIX = sys.platform != "win32"


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 (its missing parents get the usual mode); one that already
    exists is the user's and is left as it is."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if POSIX:
        os.chmod(directory, PRIVATE_DIR)


def tighten(path: Path) -> bool:
    """Make an existing file of ours 0600 (not a symlink, not someone else's); True if changed."""
    if not POSIX:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return False
    os.chmod(path, stat.S_IMODE(info.st_mode) & PRIVATE_DIR)
    return True


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless something is there already (never via a link)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(fd)


def prepare_database(db_path: Path) -> None:
    """The data directory 0700 and the database 0600 before SQLite opens it (SQLite creates the
    -wal and -shm files with the database file's mode)."""
    make_private_dir(db_path.parent)
    create_private(db_path)
    for suffix in ("", "-wal", "-shm"):
        tighten(Path(f"{db_path}{suffix}"))


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for open(): new files are 0600, and a symlink is never followed."""
    return os.open(path, flags | NOFOLLOW, PRIVATE_FILE)


# ----------------------------------------------------------------------------- exclusive files


class TargetExists(FileExistsError):
    """The destination is already there (a file, a directory or a symlink): refused."""


def exclusive_temp(directory: Path, name: str) -> tuple[Path, int]:
    """A new 0600 file next to the destination, opened O_CREAT|O_EXCL|O_NOFOLLOW: its path and
    descriptor (the caller closes it)."""
    for _ in range(16):
        candidate = directory / f".{name}.{secrets.token_hex(6)}.partial"
        try:
            fd = os.open(candidate, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, PRIVATE_FILE)
        except FileExistsError:
            continue
        return candidate, fd
    raise FileExistsError(errno.EEXIST, "cannot create a temporary file", str(directory))


def same_file(fd: int, path: Path) -> bool:
    """Is ``path`` (not followed) still the regular file open as ``fd``?"""
    try:
        here, opened = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(here.st_mode) and (here.st_dev, here.st_ino) == (
        opened.st_dev, opened.st_ino)


def publish_exclusive(temp: Path, fd: int, destination: Path) -> None:
    """Put the finished ``temp`` (open as ``fd``) at ``destination`` only if nothing is there:
    fsync the file, hard-link it into place (link() never follows or replaces an existing name,
    so a pre-planted symlink or file makes it fail), drop the temp name, fsync the directory.

    Raises TargetExists when the destination exists. On file systems without hard links it
    falls back to a rename after checking the name is free.
    """
    if not same_file(fd, temp):
        raise OSError(errno.EAGAIN, "the temporary file was replaced while it was written",
                      str(temp))
    os.fsync(fd)
    try:
        os.link(temp, destination, follow_symlinks=False)
    except FileExistsError:
        raise TargetExists(errno.EEXIST, "already exists", str(destination)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV,
                             errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(destination):
            raise TargetExists(errno.EEXIST, "already exists", str(destination)) from None
        os.rename(temp, destination)
    else:
        os.unlink(temp)
    fsync_dir(destination.parent)


def fsync_dir(directory: Path) -> None:
    if not POSIX:
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
            os.fsync(fd)
    finally:
        os.close(fd)

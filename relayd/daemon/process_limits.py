"""Process-level defences of the daemon: a raised open-file limit, one log line (not a
traceback a second) when connections cannot be accepted, and the warning for a relay that
serves a non-loopback address without a token."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from typing import Any

from relayd.config.settings import Settings

log = logging.getLogger("relayd")

MAX_OPEN_FILES = 1 << 20
ACCEPT_LOG_INTERVAL = 60.0
DESCRIPTOR_PROBE_INTERVAL = 1.0


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a descriptor; the
    usual soft 1024 runs out under a few hundred stalled clients). The (old, new) soft limits,
    or None when nothing changed."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
        return None
    log.debug("open-file limit raised from %d to %d", soft, want)
    return soft, want


class AcceptErrorLog:
    """A loop exception handler: asyncio reports each failed accept() (EMFILE when the
    descriptors run out) with a traceback, about once a second per listening socket. Here
    that is one line per ACCEPT_LOG_INTERVAL with a count; anything else goes to asyncio's
    default handler. `probe_descriptors` reports through the same instance, so a full table
    seen both ways is still one line."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.last = -interval
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if not message.startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        self.report(context.get("exception"))

    def report(self, exc: object) -> None:
        self.suppressed += 1
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        log.error(
            "cannot accept new connections: %s (%d time(s) since the last report; raise the"
            " open-file limit, e.g. LimitNOFILE= in the service, or find the clients holding"
            " connections)", exc, self.suppressed,
        )
        self.last, self.suppressed = now, 0


def descriptor_table_full() -> OSError | None:
    """The error of opening one more descriptor when the table is full, else None."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        return exc if exc.errno in (errno.EMFILE, errno.ENFILE) else None
    os.close(fd)
    return None


async def probe_descriptors(report: AcceptErrorLog,
                            interval: float = DESCRIPTOR_PROBE_INTERVAL) -> None:
    """Report a full descriptor table, whatever the event loop. uvloop (libuv) never tells
    the loop's exception handler that accept() failed: it closes a reserved descriptor,
    accepts and drops the waiting connections, and takes the reserve back, so under uvloop
    a full table is only seen by trying to open a descriptor (two syscalls a second)."""
    while True:
        await asyncio.sleep(interval)
        full = descriptor_table_full()
        if full is not None:
            report.report(full)


def unauthenticated_bind_warning(settings: Settings) -> str | None:
    """The warning for a relay reachable from other machines that asks no token."""
    if settings.is_loopback or settings.token or not settings.allow_unauth:
        return None
    return (
        f"serving {settings.host}:{settings.port} WITHOUT A TOKEN (AGENT_RELAY_ALLOW_UNAUTH=1):"
        " anyone who can reach this address can read every message and send commands to your"
        " agents; set AGENT_RELAY_TOKEN (relayctl setup) unless the network is yours alone"
    )

"""systemd's notify protocol through sdnotify: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

``sdnotify.SystemdNotifier`` reads NOTIFY_SOCKET when it is constructed and swallows errors, so
the notifier is built at start, only when NOTIFY_SOCKET is set, in debug mode (errors raise and
are logged here once). The watchdog pings come from a task on the event loop: a blocked loop
stops them and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping

import sdnotify

log = logging.getLogger("relayd.notify")


class Notifier:
    def __init__(self) -> None:
        self._notifier: sdnotify.SystemdNotifier | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._failed = False

    def start(self, status: str, env: Mapping[str, str] | None = None) -> None:
        """Connect to NOTIFY_SOCKET (if set), send READY=1 and start the watchdog pings."""
        env = os.environ if env is None else env
        if not env.get("NOTIFY_SOCKET"):
            return
        try:
            self._notifier = sdnotify.SystemdNotifier(debug=True)
        except OSError as exc:
            log.warning("cannot reach NOTIFY_SOCKET %s: %s", env["NOTIFY_SOCKET"], exc)
            return
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        interval = watchdog_interval(env)
        if interval is not None:
            self._watchdog = asyncio.create_task(self._ping(interval), name="sd-watchdog")

    def send(self, *lines: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify("\n".join(lines))
        except OSError as exc:
            if not self._failed:  # say it once, not at every watchdog ping
                log.warning("systemd notify failed: %s", exc)
            self._failed = True

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    async def stop(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    async def _ping(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds, if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2 / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, as systemd expects with RELOADING=1."""
    return time.monotonic_ns() // 1000  # CLOCK_MONOTONIC on Linux

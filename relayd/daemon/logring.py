"""The last few thousand log lines in memory, for `relayctl logs` over the control socket.

``LogRing`` is a logging.Handler with a bounded deque; followers get new lines through an
asyncio queue. Records may be emitted from any thread (each SQLite connection has its own), so
lines are handed to the followers' loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_CAPACITY = 2000
FOLLOW_QUEUE_SIZE = 1000


class Follower:
    """One `logs --follow` reader; lines that do not fit its queue are dropped (and counted)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(FOLLOW_QUEUE_SIZE)
        self.dropped = 0

    def offer(self, line: str) -> None:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1


class LogRing(logging.Handler):
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=capacity)
        self.followers: set[Follower] = set()
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.lines.append(line)
        for follower in list(self.followers):
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                follower.loop.call_soon_threadsafe(follower.offer, line)

    def tail(self, n: int) -> list[str]:
        with self._locked():
            return list(self.lines)[-n:] if n > 0 else []

    def follow(self, n: int) -> tuple[list[str], Follower]:
        """The last n lines and a follower that gets every later line, with no gap between."""
        follower = Follower(asyncio.get_running_loop())
        with self._locked():
            recent = list(self.lines)[-n:] if n > 0 else []
            self.followers.add(follower)
        return recent, follower

    def unfollow(self, follower: Follower) -> None:
        self.followers.discard(follower)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


_installed: LogRing | None = None


def install(capacity: int = DEFAULT_CAPACITY) -> LogRing:
    """Attach one ring to the root logger (idempotent) and return it."""
    global _installed
    if _installed is None:
        _installed = LogRing(capacity)
        logging.getLogger().addHandler(_installed)
    return _installed

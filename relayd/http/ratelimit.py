"""The ingress rate limit of integrations (POST /api/integrations/events): a sliding window
per integration, in memory, reset on restart."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class SlidingWindowLimiter:
    """At most `limit` events in any 60-second window per key; in memory, reset on restart.

    A sliding log (one timestamp per accepted event) rather than fixed minutes, so a burst at
    a minute boundary cannot pass twice the limit. Memory is bounded by the limit per key.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._log: dict[str, deque[float]] = {}

    def admit(self, key: str, limit: int) -> float | None:
        """Record one event and return None, or refuse it: seconds until one would pass."""
        now = self._clock()
        stamps = self._log.setdefault(key, deque())
        while stamps and stamps[0] <= now - WINDOW_SECONDS:
            stamps.popleft()
        if len(stamps) >= limit:
            return max(0.0, stamps[len(stamps) - limit] + WINDOW_SECONDS - now)
        stamps.append(now)
        return None


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

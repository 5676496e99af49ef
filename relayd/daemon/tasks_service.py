"""Wires tasks and integrations into a Relay: the callback worker, the lease reaper job, the
ingress rate limiter and the task counts in /api/stats."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from relayd.daemon.callbacks import CallbackWorker
from relayd.daemon.context import Context
from relayd.daemon.jobs import Reaper
from relayd.domain.models import now_ms


class Relay(Protocol):
    """What install() uses of the relay it wires into (relayd.daemon.relay.Relay is one)."""

    ctx: Context
    reaper: Reaper
    start_hooks: list[Callable[[Any], Awaitable[None]]]
    stop_hooks: list[Callable[[Any], Awaitable[None]]]

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


async def expire_leases(ctx: Context) -> dict[str, int]:
    """Reaper job: reopen tasks whose holder went silent or offline."""
    expired = await ctx.store.expire_task_leases(now_ms() - ctx.settings.claim_lease_ms)
    return {"expired": len(expired)}


def install(relay: Relay) -> None:
    """Called once from Relay.__init__."""
    ctx = relay.ctx
    worker = CallbackWorker(ctx)
    ctx.extras["callbacks"] = worker
    ctx.extras["integration_limiter"] = SlidingWindowLimiter()
    ctx.extras.setdefault("stats_providers", []).append(ctx.store.task_stats)
    relay.reaper.add_job("task_leases", partial(expire_leases, ctx))

    async def start_worker(_: object) -> None:
        await worker.start()

    async def stop_worker(_: object) -> None:
        await worker.stop()

    relay.start_hooks.append(start_worker)
    relay.stop_hooks.append(stop_worker)

"""Periodic housekeeping, one job after another every `reap_interval_ms`: stale agents go
offline and long-offline ones go, silent task holders lose their lease, pending pair invites
expire; old history goes once a minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from relayd.daemon.context import Context
from relayd.domain.models import now_ms

log = logging.getLogger("relayd.reaper")
Job = Callable[[], Awaitable[object]]
HISTORY_EVERY_SECONDS = 60.0


class Reaper:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None
        self._jobs: list[tuple[str, Job]] = [
            ("agents", self.reap_agents),
            ("pairs", self.reap_pairs),
            ("task_leases", self.expire_leases),
        ]
        self._last_history = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.reap_interval_ms / 1000)
            await self.run_once()

    async def run_once(self, force_history: bool = False) -> dict[str, object]:
        results: dict[str, object] = {}
        # With several replicas on one PostgreSQL, one replica at a time runs these (advisory
        # lock); the others skip them. A forced run (control /v1/prune) runs here regardless.
        store = self.ctx.store
        for name, job in self._jobs:
            if force_history or await store.hold_job_lock(f"reaper:{name}"):
                results[name] = await self._guarded(name, job)
        due = time.monotonic() - self._last_history >= HISTORY_EVERY_SECONDS
        if force_history or (due and await store.hold_job_lock("reaper:history")):
            self._last_history = time.monotonic()
            results["history"] = await self._guarded("history", self.prune_history)
        return results

    async def _guarded(self, name: str, job: Job) -> object:
        try:
            return await job()
        except Exception as exc:  # one failing job must not stop housekeeping
            log.warning("reaper job %s failed: %s", name, exc)
            return {"error": str(exc)}

    async def reap_agents(self) -> dict[str, int]:
        settings, store = self.ctx.settings, self.ctx.store
        now = now_ms()
        stale = await store.mark_stale(now - settings.stale_ttl_ms)
        removed = await store.prune_offline(now - settings.offline_prune_ms)
        if stale or removed:
            log.info("agents: %d went offline, %d pruned", len(stale), len(removed))
        return {"offline": len(stale), "removed": len(removed)}

    async def reap_pairs(self) -> dict[str, int]:
        """Pending invites older than pending_pair_ttl_ms expire; orphaned pairs end."""
        outcome = await self.ctx.store.reap_pairs(self.ctx.settings.pending_pair_ttl_ms)
        counts = {name: len(pairs) for name, pairs in outcome.items()}
        if any(counts.values()):
            log.info(
                "pairs: %d invites expired, %d orphaned pairs ended",
                counts["expired"],
                counts["ended"],
            )
        return counts

    async def expire_leases(self) -> dict[str, int]:
        """Reopen tasks whose holder went silent or offline."""
        settings = self.ctx.settings
        expired = await self.ctx.store.expire_task_leases(now_ms() - settings.claim_lease_ms)
        return {"expired": len(expired)}

    async def prune_history(self) -> dict[str, int]:
        settings = self.ctx.settings
        cutoff = now_ms() - settings.retention_days * 24 * 3600 * 1000
        return await self.ctx.store.prune_history(cutoff, settings.event_retention)

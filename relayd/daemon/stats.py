"""The relay's counts, as GET /api/stats, the dashboard and `relayctl status` show them."""

from __future__ import annotations

from typing import Any

from relayd import __version__
from relayd.daemon.context import Context
from relayd.domain.models import iso, now_ms

RATE_BUCKET_MS = 60_000
RATE_BUCKETS = 60


async def message_rate(ctx: Context) -> dict[str, Any]:
    """Messages per minute over the last hour, oldest minute first (the dashboard's chart).
    Minutes are whole clock minutes; the last one is the current, still filling, minute."""
    until = (now_ms() // RATE_BUCKET_MS + 1) * RATE_BUCKET_MS
    counts = await ctx.store.message_rate(until, RATE_BUCKET_MS, RATE_BUCKETS)
    return {"bucketSeconds": RATE_BUCKET_MS // 1000, "until": iso(until), "counts": counts}


async def collect_stats(ctx: Context) -> dict[str, Any]:
    store = ctx.store
    counts = await store.stats()
    tasks = (await store.task_stats()).get("tasks", {})
    return {
        "version": __version__,
        "uptimeSeconds": ctx.uptime_seconds,
        **counts,
        "tasks": tasks,
        "pairs": await store.pair_counts(),
        "sse": {"connections": ctx.sse_connections, "subscribers": ctx.bus.subscriber_count},
        "storage": {
            "backend": store.backend,
            "commits": store.commits,
            "writes": store.committed_writes,
        },
        "replica": {
            "id": ctx.replica_id,
            "backend": store.backend,
            "jobs": store.held_jobs(),  # once-only jobs this replica runs now
        },
        "messageRate": await message_rate(ctx),
    }

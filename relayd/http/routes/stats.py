"""/api/stats and /api/health."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relayd import __version__
from relayd.daemon.context import Context
from relayd.domain.models import iso, now_ms
from relayd.http.auth import requires
from relayd.http.errors import json_error
from relayd.http.keys import context_of
from relayd.http.responses import ok
from relayd.metrics import CONTENT_TYPE

RATE_BUCKET_MS = 60_000
RATE_BUCKETS = 60


async def message_rate(ctx: Context) -> dict[str, Any]:
    """Messages per minute over the last hour, oldest minute first (the dashboard's chart).
    Minutes are whole clock minutes; the last one is the current, still filling, minute."""
    until = (now_ms() // RATE_BUCKET_MS + 1) * RATE_BUCKET_MS
    counts = await ctx.store.message_rate(until, RATE_BUCKET_MS, RATE_BUCKETS)
    return {"bucketSeconds": RATE_BUCKET_MS // 1000, "until": iso(until), "counts": counts}


async def collect_stats(ctx: Context) -> dict[str, Any]:
    counts = await ctx.store.stats()
    extra_counts = ctx.extras.get("stats_providers", [])
    for provider in extra_counts:
        counts.update(await provider())
    return {
        "version": __version__,
        "uptimeSeconds": ctx.uptime_seconds,
        **counts,
        "tasks": counts.get("tasks", {}),
        "pairs": counts.get("pairs", {}),
        "sse": {"connections": ctx.sse_connections, "subscribers": ctx.bus.subscriber_count},
        "storage": {"commits": ctx.store.commits, "writes": ctx.store.committed_writes},
        "messageRate": await message_rate(ctx),
    }


@requires("stats:read")
async def stats(request: web.Request) -> web.Response:
    return ok(await collect_stats(context_of(request)))


@requires("stats:read")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; also served at /metrics with the same auth."""
    body = context_of(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@requires("health:read")
async def health(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if ctx.stopping.is_set():
        return json_error(
            503,
            {
                "status": "stopping",
                "version": __version__,
                "error": "the relay is shutting down",
                "code": "unavailable",
            },
        )
    if not await ctx.store.healthy():
        return json_error(
            503,
            {
                "status": "unavailable",
                "version": __version__,
                "error": f"storage is not usable: {ctx.store.unhealthy_reason}"
                if ctx.store.unhealthy_reason else "storage is not usable",
                "code": "unavailable",
            },
        )
    # staleTtlMs: providers heartbeat at least every third of it.
    return ok({"status": "ok", "version": __version__,
               "staleTtlMs": ctx.settings.stale_ttl_ms})

"""/api/stats, /api/metrics (and /metrics) and /api/health."""

from __future__ import annotations

from aiohttp import web

from relayd import __version__
from relayd.daemon.stats import collect_stats
from relayd.http.auth import requires
from relayd.http.errors import json_error
from relayd.http.keys import context_of
from relayd.http.responses import ok
from relayd.metrics import CONTENT_TYPE


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

"""What the HTTP app keeps under its app keys: the running relay's Context, and the state
that belongs to the HTTP layer alone (the browser rules in force, the ingress rate limit)."""

from __future__ import annotations

from aiohttp import web

from relayd.daemon.context import Context
from relayd.http.browser_guard import PolicyCache
from relayd.http.ratelimit import SlidingWindowLimiter

CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)
BROWSER_POLICY: web.AppKey[PolicyCache] = web.AppKey("browser_policy", PolicyCache)
INGRESS_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey(
    "ingress_limiter", SlidingWindowLimiter
)


def context_of(request: web.Request) -> Context:
    return request.app[CONTEXT]

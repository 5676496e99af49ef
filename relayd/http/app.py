"""The aiohttp Application: the one route table of the HTTP API, its middleware and hooks."""

from __future__ import annotations

import logging

from aiohttp import web

from relayd.daemon.context import Context
from relayd.http import dashboard
from relayd.http.browser_guard import PolicyCache
from relayd.http.errors import Handler
from relayd.http.keys import BROWSER_POLICY, CONTEXT, INGRESS_LIMITER
from relayd.http.middleware import add_cors_headers, relay_middleware
from relayd.http.openapi import document as openapi
from relayd.http.ratelimit import SlidingWindowLimiter
from relayd.http.routes import agents, events, integrations, messages, pairs, stats, tasks
from relayd.mcp import http as mcp_http

Route = tuple[str, str, Handler]
log = logging.getLogger("relayd.http")

ROUTES: list[Route] = [
    ("POST", "/api/agents", agents.register),
    ("GET", "/api/agents", agents.list_agents),
    ("GET", "/api/agents/find", agents.find),
    ("GET", "/api/agents/{id}", agents.get),
    ("PATCH", "/api/agents/{id}", agents.patch),
    ("DELETE", "/api/agents/{id}", agents.delete),
    ("POST", "/api/agents/{id}/heartbeat", agents.heartbeat),
    ("PATCH", "/api/agents/{id}/label", agents.set_label),
    ("POST", "/api/messages", messages.send),
    ("GET", "/api/messages", messages.list_messages),
    ("GET", "/api/messages/cursor", messages.cursor),
    # Numeric ids only, so PATCH/DELETE /api/messages/cursor is a 405, not "no message 'cursor'".
    ("GET", r"/api/messages/{id:\d+}", messages.get),
    ("PATCH", r"/api/messages/{id:\d+}", messages.mark),
    ("DELETE", r"/api/messages/{id:\d+}", messages.delete),
    ("GET", "/api/messages/{id}/thread", messages.thread),
    ("POST", "/api/messages/{id}/claim", messages.claim),
    ("GET", "/api/events", events.stream),
    ("GET", "/api/stats", stats.stats),
    ("GET", "/api/metrics", stats.metrics),
    ("GET", "/api/health", stats.health),
    ("GET", "/api/openapi.json", openapi.document),
    ("POST", "/api/pairs", pairs.create),
    ("GET", "/api/pairs", pairs.list_pairs),
    ("GET", "/api/pairs/{id}", pairs.get),
    ("POST", "/api/pairs/{id}/accept", pairs.accept),
    ("POST", "/api/pairs/{id}/reject", pairs.reject),
    ("POST", "/api/pairs/{id}/messages", pairs.send_message),
    ("POST", "/api/pairs/{id}/hangup", pairs.hangup),
    ("POST", "/api/integrations/events", integrations.post_event),
    ("GET", "/api/integrations", integrations.list_integrations),
    ("GET", "/api/channels", integrations.list_channels),
    ("GET", "/api/tasks", tasks.list_tasks),
    ("GET", "/api/tasks/{id}", tasks.get),
    ("GET", "/api/tasks/{id}/events", tasks.events),
    ("POST", "/api/tasks/{id}/claim", tasks.claim),
    ("PATCH", "/api/tasks/{id}/status", tasks.set_status),
    # The Model Context Protocol (streamable HTTP); the SDK loads on first use.
    ("POST", "/mcp", mcp_http.handle),
    ("GET", "/mcp", mcp_http.handle),
    ("DELETE", "/mcp", mcp_http.handle),
]

def create_app(ctx: Context) -> web.Application:
    app = web.Application(
        middlewares=[relay_middleware],
        client_max_size=ctx.settings.max_body_bytes,
    )
    app[CONTEXT] = ctx
    app[BROWSER_POLICY] = PolicyCache()
    app[INGRESS_LIMITER] = SlidingWindowLimiter()
    app[mcp_http.MCP] = mcp_http.McpEndpoint(ctx)
    app.on_response_prepare.append(add_cors_headers)
    app.on_shutdown.append(mcp_http.on_shutdown)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/metrics", stats.metrics)  # where Prometheus looks by default
    app.router.add_get("/", dashboard.page)
    app.router.add_get("/static/{name}", dashboard.static_asset)
    return app

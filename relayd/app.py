"""The aiohttp Application: middlewares, and the one route table of the HTTP API."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import PurePosixPath

from aiohttp import web

from relayd.api import agents, events, integrations, messages, openapi, pairs, stats, tasks
from relayd.api import dashboard as dashboard_page
from relayd.auth import authorize
from relayd.browser_guard import check_host, check_json_body, check_origin
from relayd.context import CONTEXT, Context, context_of
from relayd.errors import forbidden
from relayd.http_errors import Handler, error_response
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

CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Agent-Relay-Token"


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    allowed = context_of(request).settings.cors_origins
    if origin is None or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/") in allowed else None


def cors_preflight(request: web.Request) -> web.Response | None:
    """Same-origin by default; AGENT_RELAY_CORS_ORIGINS opens the API to listed origins."""
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        if _allowed_origin(request) is None:
            raise forbidden("this origin may not call the API (AGENT_RELAY_CORS_ORIGINS)")
        return web.Response(status=204)
    return None


def _local_address(request: web.Request) -> str | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return str(sockname[0]) if isinstance(sockname, tuple) and sockname else None


@web.middleware
async def relay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON, the browser checks (Host, Origin, JSON bodies), CORS preflight, auth
    and request metrics in one layer: aiohttp wraps every middleware layer per request, and
    this is the hottest path of the daemon. It runs for every route, unknown paths included."""
    started = time.perf_counter()
    response = await _guarded(request, handler)
    resource = request.match_info.route.resource
    # SSE streams have no latency to speak of: they last as long as the client stays
    seconds = time.perf_counter() - started if isinstance(response, web.Response) else None
    context_of(request).metrics.request(
        resource.canonical if resource is not None else "unmatched",
        request.method,
        response.status,
        seconds,
    )
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        headers = request.headers
        policy = context_of(request).browser_policy
        host = headers.get("Host")
        check_host(policy, host, lambda: _local_address(request))
        check_origin(policy, headers.get("Origin"), headers.get("Sec-Fetch-Site"), host)
        preflight = cors_preflight(request)
        if preflight is not None:
            return preflight
        authorize(request)
        if request.match_info.http_exception is None:  # unknown routes stay 404/405
            check_json_body(request.method, headers.get("Content-Type"), request.body_exists)
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response as it is sent, so errors and SSE streams carry them too."""
    origin = _allowed_origin(request)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        if origin != "*":
            response.headers["Vary"] = "Origin"


# Scripts and styles come only from /static/ files: no inline code, so the policy can stay strict.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}


def _static_headers(cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": DASHBOARD_CSP,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


async def dashboard(request: web.Request) -> web.Response:
    """The page, with its first data embedded when the caller may see it (api/dashboard.py)."""
    try:
        page = await dashboard_page.render(request)
    except Exception as exc:  # storage trouble: the page still loads, and fetches instead
        log.warning("dashboard snapshot failed: %s", exc)
        page = dashboard_page.page_template().replace(dashboard_page.MARKER, "null", 1)
    return web.Response(text=page, content_type="text/html", headers=_static_headers("no-store"))


async def static_asset(request: web.Request) -> web.Response:
    """The dashboard's own .js/.css files; plain names only, so no path can escape static/."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(PurePosixPath(name).suffix)
    asset = resources.files("relayd").joinpath("static", name)
    if content_type is None or "/" in name or name.startswith(".") or not asset.is_file():
        raise web.HTTPNotFound()  # the error middleware answers the contract's JSON 404
    return web.Response(
        text=asset.read_text(encoding="utf-8"),
        content_type=content_type,
        charset="utf-8",
        headers=_static_headers("no-cache"),
    )


def create_app(ctx: Context, extra_routes: list[Route] | None = None) -> web.Application:
    app = web.Application(
        middlewares=[relay_middleware],
        client_max_size=ctx.settings.max_body_bytes,
    )
    app[CONTEXT] = ctx
    app.on_response_prepare.append(add_cors_headers)
    app.on_shutdown.append(mcp_http.on_shutdown)
    for method, path, handler in [*ROUTES, *(extra_routes or [])]:
        app.router.add_route(method, path, handler)
    app.router.add_get("/metrics", stats.metrics)  # where Prometheus looks by default
    app.router.add_get("/", dashboard)
    app.router.add_get("/static/{name}", static_asset)
    return app

"""The one middleware layer of the HTTP API: errors as JSON, the browser checks, CORS, auth,
request metrics."""

from __future__ import annotations

import time

from aiohttp import web

from relayd.errors import forbidden
from relayd.http.auth import authorize
from relayd.http.browser_guard import check_host, check_json_body, check_origin
from relayd.http.errors import Handler, error_response
from relayd.http.keys import BROWSER_POLICY, context_of

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
        policy = request.app[BROWSER_POLICY].current(context_of(request).settings)
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

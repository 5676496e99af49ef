"""The HTTP side of errors: every failure a handler raises becomes the contract's JSON error.

relayd/errors.py defines the errors (no aiohttp); this module is where they meet aiohttp.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relayd.errors import ApiError

log = logging.getLogger("relayd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_error_response(exc: ApiError) -> web.Response:
    response = json_error(exc.status, exc.payload(), exc.headers)
    if exc.close:
        response.force_close()
    return response


def json_error(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        raise exc
    code = _HTTP_CODES.get(exc.status, "invalid_request" if exc.status < 500 else "unavailable")
    if exc.status == 404:
        message = "no such route"
    elif exc.status == 405:
        message = "method not allowed on this path"
    elif exc.status == 413:
        message = "request body is larger than the limit"
    else:
        message = exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return json_error(exc.status, {"error": message, "code": code}, headers)


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON answer for an exception raised while handling `request`."""
    if isinstance(exc, ApiError):
        return api_error_response(exc)
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, ConnectionError):
        # the client went away (or the watchdog closed it): nobody reads this answer, and a
        # departing client is not an error worth a traceback
        log.debug("client gone during %s %s: %s", request.method, request.path, exc)
        response = json_error(400, {"error": "connection closed", "code": "invalid_request"})
        response.force_close()
        return response
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, {"error": "internal error", "code": "internal"})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)

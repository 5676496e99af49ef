"""ApiError and the middleware that turns every failure into the contract's JSON error."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("relayd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error the client can act on: an HTTP status, a stable code and a sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.close = close  # end the connection after answering
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self) -> web.Response:
        payload = {"error": self.message, "code": self.code, **self.extra}
        response = json_error(self.status, payload, self.headers)
        if self.close:
            response.force_close()
        return response


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def conflict(code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(409, code, message, extra=extra)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message)


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
        return exc.response()
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

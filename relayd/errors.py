"""The errors every layer raises: ApiError (what the client can act on) and StartupError.

No aiohttp here: the domain and storage raise these, and the HTTP layer
(relayd/http/errors.py) turns them into JSON answers.
"""

from __future__ import annotations

from typing import Any


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

    def payload(self) -> dict[str, Any]:
        """The JSON body of the answer: the contract's error shape."""
        return {"error": self.message, "code": self.code, **self.extra}


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


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


class DatabaseUnreachable(StartupError):
    """The PostgreSQL server named by DB_URL does not answer."""

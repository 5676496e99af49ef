"""The answers handlers build: JSON bodies (orjson where it agrees with the stdlib), 204."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relayd import jsoncodec


def ok(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=jsoncodec.dumps_bytes(payload),
        content_type="application/json",
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def paged(payload: dict[str, Any], following: Any) -> web.Response:
    """A list answer, with `next` only when another page follows."""
    if following is not None:
        payload["next"] = following
    return ok(payload)

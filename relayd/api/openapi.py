"""/api/openapi.json: the OpenAPI 3.1 document of the routes (schemas in relayd.api.schema)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relayd import __version__
from relayd.api.common import ok, requires


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path or not path.startswith("/api/") or route.method == "HEAD":
            continue
        operation = {
            "operationId": f"{route.method.lower()}_{route.handler.__module__}"
            f".{route.handler.__name__}",
            "responses": {"default": {"description": ""}},
        }
        paths.setdefault(path.removeprefix("/api"), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Relay", "version": __version__},
        "servers": [{"url": "/api"}],
        "paths": paths,
    }


@requires(None)
async def document(request: web.Request) -> web.Response:
    return ok(build_document(request.app))

"""/api/openapi.json: the OpenAPI 3.1 document of the routes (schemas in
relayd.http.openapi.components).

The document is built from the router: an operation is emitted only when its route is served,
and each operation carries the token scope its handler declares (``x-scope``). A served route
without a description still appears, marked ``x-undocumented`` (a unit test keeps that list
empty), so the document never hides a route.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from aiohttp import web

from relayd import __version__
from relayd.http.auth import requires
from relayd.http.openapi import components, operations
from relayd.http.responses import ok

API_PREFIX = "/api"
PLACEHOLDER_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
METHODS = ("get", "post", "put", "patch", "delete")


def normalized(path: str) -> str:
    """The path with every placeholder name erased: `/pairs/{pairId}` → `/pairs/{}`."""
    return PLACEHOLDER_RE.sub("{}", path)


DESCRIBED = {normalized(path): path for path in operations.OPERATIONS}


def served_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path without /api, handler) of every API route the app serves."""
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path or not path.startswith(API_PREFIX + "/") or route.method in ("HEAD", "*"):
            continue
        routes.append((route.method.lower(), path.removeprefix(API_PREFIX), route.handler))
    return routes


def described_operation(method: str, path: str) -> dict[str, Any] | None:
    item = operations.OPERATIONS.get(DESCRIBED.get(normalized(path), ""), {})
    described: dict[str, Any] | None = item.get(method)
    if described is None:
        return None
    operation = copy.deepcopy(described)
    operation["parameters"] = [*item.get("parameters", []), *operation.get("parameters", [])]
    if not operation["parameters"]:
        del operation["parameters"]
    operation["responses"] = {**components.COMMON_RESPONSES, **operation["responses"]}
    return operation


def undescribed_operation(method: str, path: str) -> dict[str, Any]:
    return {
        "operationId": f"{method}_{normalized(path).strip('/').replace('/', '_')}",
        "x-undocumented": True,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in PLACEHOLDER_RE.findall(path)
        ],
        "responses": {"default": {"description": "not described yet"}},
    }


def rename_path_parameters(operation: dict[str, Any], path: str) -> None:
    """Use the router's placeholder names (the descriptions say `{id}`)."""
    names = PLACEHOLDER_RE.findall(path)
    if names == ["id"] or not names:
        return
    params = operation.get("parameters", [])
    path_params = [p for p in params if _resolve(p).get("in") == "path"]
    for param, name in zip(path_params, names, strict=False):
        resolved = copy.deepcopy(_resolve(param))
        resolved["name"] = name
        params[params.index(param)] = resolved


def _resolve(param: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in param:
        resolved: dict[str, Any] = components.PARAMETERS[param["$ref"].rsplit("/", 1)[-1]]
        return resolved
    return param


def operation_for(method: str, path: str, handler: Any) -> dict[str, Any]:
    operation = described_operation(method, path) or undescribed_operation(method, path)
    rename_path_parameters(operation, path)
    if method in ("post", "patch") and "requestBody" in operation:
        operation.setdefault("responses", {}).update(components.errors(415))
    scope = getattr(handler, "scope", None)
    if scope is not None:
        operation["x-scope"] = [scope] if isinstance(scope, str) else list(scope)
    tag = next((t for p, t in operations.TAGS_BY_PREFIX.items() if path.startswith(p)), "system")
    operation.setdefault("tags", [tag])
    return operation


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in served_routes(app):
        openapi_path = PLACEHOLDER_RE.sub(r"{\1}", path)
        paths.setdefault(openapi_path, {})[method] = operation_for(method, path, handler)
    ordered = {
        path: {m: item[m] for m in METHODS if m in item} for path, item in sorted(paths.items())
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Relay",
            "version": __version__,
            "description": components.DESCRIPTION,
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{"bearer": []}, {"relayToken": []}],
        "tags": [
            {"name": t} for t in dict.fromkeys([*operations.TAGS_BY_PREFIX.values(), "system"])
        ],
        "paths": ordered,
        "components": copy.deepcopy(components.COMPONENTS),
    }


@requires(None)
async def document(request: web.Request) -> web.Response:
    return ok(build_document(request.app))

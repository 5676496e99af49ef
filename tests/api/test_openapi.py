"""The OpenAPI document matches the routes, both ways, and says what the handlers enforce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relayd.daemon.relay import Relay
from relayd.http.auth import requires
from relayd.http.openapi import operations
from relayd.http.openapi.document import PLACEHOLDER_RE, build_document, normalized, served_routes
from relayd.http.responses import ok

# Served /api routes that deliberately have no operation in the document: none.
UNDOCUMENTED_ROUTES: set[tuple[str, str]] = set()


def served_app(relay: Relay) -> web.Application:
    assert relay.http.runner is not None
    return relay.http.runner.app


def operations_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, normalized(path))
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = document["components"][section][name]
    return node


def parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for param in document["paths"][path][method].get("parameters", []):
        resolved = resolve(document, param)
        if resolved["name"] == name:
            return resolved
    raise AssertionError(f"{method} {path} has no parameter {name}")


def body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = document["paths"][path][method]["requestBody"]["content"]
    return resolve(document, content["application/json"]["schema"])


@pytest.fixture
async def document(http: aiohttp.ClientSession) -> dict[str, Any]:
    response = await http.get("/api/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    served: dict[str, Any] = await response.json()
    return served


async def test_every_served_api_route_has_a_described_operation(
    relay: Relay, document: dict[str, Any]
) -> None:
    routes = {(m, normalized(p)) for m, p, _ in served_routes(served_app(relay))}
    assert len(routes) >= 20
    assert routes - UNDOCUMENTED_ROUTES <= operations_of(document)
    undescribed = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("x-undocumented")
    ]
    assert undescribed == [], "describe these in relayd/http/openapi/operations.py"


async def test_every_documented_operation_is_served(
    relay: Relay, document: dict[str, Any]
) -> None:
    routes = {(m, normalized(p)) for m, p, _ in served_routes(served_app(relay))}
    assert operations_of(document) <= routes


def test_only_served_routes_are_emitted_and_unknown_ones_are_flagged() -> None:
    @requires("agents:read")
    async def handler(request: web.Request) -> web.Response:
        return ok({})

    app = web.Application()
    app.router.add_get("/api/agents", handler)
    app.router.add_post("/api/pairs/{pair_id}/accept", handler)
    app.router.add_get("/api/unknown/{thing}", handler)
    app.router.add_get("/not-api", handler)
    document = build_document(app)

    assert set(document["paths"]) == {"/agents", "/pairs/{pair_id}/accept", "/unknown/{thing}"}
    assert document["paths"]["/agents"]["get"]["operationId"] == "listAgents"
    assert document["paths"]["/agents"]["get"]["x-scope"] == ["agents:read"]
    accept = document["paths"]["/pairs/{pair_id}/accept"]["post"]
    assert parameter(document, "/pairs/{pair_id}/accept", "post", "pair_id")["in"] == "path"
    assert accept["operationId"] == "acceptPair"
    unknown = document["paths"]["/unknown/{thing}"]["get"]
    assert unknown["x-undocumented"] is True
    assert unknown["parameters"][0]["name"] == "thing"


def test_every_described_path_is_a_contract_path() -> None:
    # Descriptions for routes that do not exist would silently never be emitted.
    contract_roots = {"agents", "messages", "events", "stats", "health", "openapi.json",
                      "pairs", "tasks", "integrations", "channels", "metrics"}  # fmt: skip
    assert {path.split("/")[1] for path in operations.OPERATIONS} <= contract_roots


async def test_parameters_carry_the_ranges_the_handlers_enforce(
    document: dict[str, Any],
) -> None:
    limit = parameter(document, "/messages", "get", "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 1000)
    wait = parameter(document, "/messages", "get", "wait")["schema"]
    assert (wait["minimum"], wait["maximum"]) == (0, 60)
    assert parameter(document, "/messages", "get", "since")["schema"]["minimum"] == 0
    agent_id = parameter(document, "/agents/{id}", "get", "id")["schema"]
    assert agent_id["pattern"] == "^[A-Za-z0-9._:@-]{1,128}$"
    message_id = parameter(document, "/messages/{id}", "get", "id")["schema"]
    assert (message_id["type"], message_id["minimum"]) == ("integer", 1)
    key = parameter(document, "/messages", "post", "Idempotency-Key")
    assert (key["in"], key["schema"]["maxLength"]) == ("header", 128)
    assert parameter(document, "/events", "get", "Last-Event-ID")["in"] == "header"


async def test_bodies_and_answers_name_the_contract_fields(document: dict[str, Any]) -> None:
    registration = body_schema(document, "/agents", "post")
    assert registration["required"] == ["id"]
    assert "busy" in registration["properties"]["status"]["enum"]
    assert registration["properties"]["approval"]["enum"] == ["open", "guarded", "read-only", None]
    send = body_schema(document, "/messages", "post")
    assert set(send["required"]) == {"from", "to", "body"}
    assert send["properties"]["body"]["maxLength"] == 65536
    schemas = document["components"]["schemas"]
    assert schemas["Agent"]["properties"]["status"]["enum"] == ["online", "busy", "idle", "offline"]
    assert set(schemas["MessageList"]["required"]) == {"messages", "cursor"}
    assert schemas["Error"]["required"] == ["error", "code"]
    responses = document["paths"]["/messages/{id}/claim"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "503"} <= set(responses)
    assert set(document["paths"]["/agents/{id}"]["delete"]["responses"]) >= {"204", "404"}


async def test_security_schemes_are_bearer_and_the_token_header(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["relayToken"]["name"] == "X-Agent-Relay-Token"
    assert document["security"] == [{"bearer": []}, {"relayToken": []}]


async def test_every_operation_declares_the_scope_its_handler_requires(
    relay: Relay, document: dict[str, Any]
) -> None:
    for method, path, handler in served_routes(served_app(relay)):
        operation = document["paths"][PLACEHOLDER_RE.sub(r"{\1}", path)][method]
        scope = handler.scope
        expected = None if scope is None else [scope] if isinstance(scope, str) else list(scope)
        assert operation.get("x-scope") == expected, f"{method} {path}"


async def test_the_document_needs_the_token_when_one_is_set(
    relay_factory: Callable[..., Any],
) -> None:
    relay = await relay_factory(token="document-token")
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        assert (await session.get("/api/openapi.json")).status == 401
        response = await session.get(
            "/api/openapi.json", headers={"X-Agent-Relay-Token": "document-token"}
        )
        assert response.status == 200
        assert (await response.json())["openapi"] == "3.1.0"

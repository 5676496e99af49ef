"""Hostile and malformed input: every bad request gets the contract's 4xx JSON error, never a
500, and changes nothing. Also authentication, scopes and CORS."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from relayd.config.settings import Integration
from relayd.daemon.relay import Relay

TOKEN = "s3cret-admin-token"


async def snapshot(http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> Any:
    """Everything a bad request must leave untouched."""
    stats = await (await http.get("/api/stats", headers=headers)).json()
    agents = await (await http.get("/api/agents", headers=headers)).json()
    messages = await (await http.get("/api/messages", headers=headers)).json()
    return stats["agents"], stats["messages"], stats["events"], agents, messages


async def assert_error(resp: aiohttp.ClientResponse, status: int, code: str | None) -> None:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.headers["Content-Type"].startswith("application/json"), text
    payload = json.loads(text)
    assert isinstance(payload["error"], str) and payload["error"]
    if code is not None:
        assert payload["code"] == code, payload


@pytest.fixture
async def world(http: aiohttp.ClientSession) -> aiohttp.ClientSession:
    for agent in ("alice", "bob"):
        resp = await http.post("/api/agents", json={"id": agent, "tags": ["team"]})
        assert resp.status == 201
    resp = await http.post(
        "/api/messages", json={"from": "alice", "to": "tag:team", "body": "x", "claimable": True}
    )
    assert resp.status == 201
    return http


BODY_ENDPOINTS = [
    ("POST", "/api/agents"),
    ("PATCH", "/api/agents/bob"),
    ("PATCH", "/api/agents/bob/label"),
    ("POST", "/api/agents/bob/heartbeat"),
    ("POST", "/api/messages"),
    ("PATCH", "/api/messages/1"),
    ("POST", "/api/messages/1/claim"),
]

NOT_JSON_OBJECTS = [
    b"not json",
    b"{",
    b'{"id": "a",}',
    b"[]",
    b'[{"id": "x"}]',
    b'"a string"',
    b"123",
    b"null",
    b"true",
    b"\xff\xfe{}",
    b'{"id": "caf\xe9"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"from": "a", "to": "bob", "body": "x", "meta": {"n": NaN}}',
    b'{"from": "a", "to": "bob", "body": "x", "meta": {"n": Infinity}}',
    b'{"id": "a", "meta": {"n": ' + b"9" * 5000 + b"}}",
    b'{"id": "a", "meta": {"n": 1e999}}',
    b'{"from": "a", "to": "bob", "body": "x", "meta": {"n": -1E400}}',
]


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize("raw", NOT_JSON_OBJECTS, ids=lambda raw: repr(raw[:24]))
async def test_bodies_that_are_not_json_objects(
    world: aiohttp.ClientSession, method: str, path: str, raw: bytes
) -> None:
    before = await snapshot(world)
    resp = await world.request(method, path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    await assert_error(resp, 400, None)
    assert (await resp.json())["code"] in ("invalid_json", "invalid_request")
    assert await snapshot(world) == before


@pytest.mark.parametrize(("method", "path"), [e for e in BODY_ENDPOINTS if "heartbeat" not in e[1]])
async def test_missing_body(world: aiohttp.ClientSession, method: str, path: str) -> None:
    before = await snapshot(world)
    await assert_error(await world.request(method, path), 400, "invalid_json")
    assert await snapshot(world) == before


def message(**changes: Any) -> dict[str, Any]:
    return {"from": "alice", "to": "bob", "body": "hello", **changes}


BAD_MESSAGES = [
    {"to": "bob", "body": "x"},
    {"from": "alice", "body": "x"},
    {"from": "alice", "to": "bob"},
    message(**{"from": 1}),
    message(**{"from": ""}),
    message(**{"from": None}),
    message(**{"from": "x" * 129}),
    message(to=["bob"]),
    message(to=7),
    message(to="bad id"),
    message(to="tag:"),
    message(to="id:"),
    message(to="bob/../x"),
    message(to="bob\n"),
    message(body=""),
    message(body=5),
    message(body=["x"]),
    message(body={"text": "x"}),
    message(subject=1),
    message(channel=True),
    message(replyTo="1"),
    message(replyTo=1.5),
    message(replyTo=True),
    message(replyTo=0),
    message(replyTo=-3),
    message(replyTo=10**30),
    message(replyTo=9999),
    message(claimable="yes"),
    message(claimable=1),
    message(meta=[]),
    message(meta="x"),
    message(meta={"deep": json.loads("[" * 40 + "]" * 40)}),
    message(meta={"big": "x" * 20_000}),
]


@pytest.mark.parametrize("payload", BAD_MESSAGES, ids=lambda p: json.dumps(p)[:40])
async def test_bad_message_fields(world: aiohttp.ClientSession, payload: dict[str, Any]) -> None:
    before = await snapshot(world)
    await assert_error(await world.post("/api/messages", json=payload), 400, "invalid_request")
    assert await snapshot(world) == before


RAW_STRINGS = [
    b'{"from": "alice", "to": "bob", "body": "\\ud800"}',
    b'{"from": "alice", "to": "bob", "body": "a\\udfffb"}',
    b'{"from": "alice", "to": "bob", "body": "a\\u0000b"}',
    b'{"from": "al\\u0000ice", "to": "bob", "body": "x"}',
    b'{"from": "alice", "to": "bob", "body": "x", "subject": "\\ud83d"}',
    b'{"from": "alice", "to": "bob", "body": "x", "meta": {"k": "\\u0000"}}',
    b'{"from": "alice", "to": "bob", "body": "x", "meta": {"\\ud800": 1}}',
    b'{"from": "alice", "to": "bob", "body": "x", "meta": {"k": ["\\udc00"]}}',
]


@pytest.mark.parametrize("raw", RAW_STRINGS, ids=lambda raw: raw.decode()[30:70])
async def test_nul_and_lone_surrogates(world: aiohttp.ClientSession, raw: bytes) -> None:
    before = await snapshot(world)
    resp = await world.post("/api/messages", data=raw, headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "invalid_request")
    assert await snapshot(world) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "carol", "label": "\\ud800"}',
        b'{"id": "carol", "tags": ["a\\u0000"]}',
        b'{"id": "car\\u0000ol"}',
        b'{"id": "carol", "meta": {"x": "\\udfff"}}',
    ],
)
async def test_nul_and_surrogates_in_agents(world: aiohttp.ClientSession, raw: bytes) -> None:
    before = await snapshot(world)
    resp = await world.post("/api/agents", data=raw, headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "invalid_request")
    assert await snapshot(world) == before


async def test_valid_unicode_round_trips(world: aiohttp.ClientSession) -> None:
    text = "emoji 😀, CJK 漢字, RTL עברית, combining é"
    resp = await world.post("/api/messages", json=message(body=text, subject=text))
    assert resp.status == 201
    stored = await (await world.get(f"/api/messages/{(await resp.json())['id']}")).json()
    assert stored["body"] == text and stored["subject"] == text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/messages/1", {"agent": 5, "read": True}),
        ("PATCH", "/api/messages/1", {"agent": "bob", "read": "true"}),
        ("PATCH", "/api/messages/1", {"agent": "bad id", "read": True}),
        ("POST", "/api/messages/1/claim", {"agent": ["bob"]}),
        ("POST", "/api/agents/bob/heartbeat", {"status": ["online"]}),
        ("PATCH", "/api/agents/bob", {"status": "zombie"}),
        ("PATCH", "/api/agents/bob", {"capabilities": "chat"}),
        ("PATCH", "/api/agents/bob", {"tags": ["x" * 200]}),
        ("PATCH", "/api/agents/bob", {"tags": [f"t{i}" for i in range(100)]}),
        ("PATCH", "/api/agents/bob/label", {"label": None}),
        ("PATCH", "/api/agents/bob/label", {"label": "x" * 300}),
        ("POST", "/api/agents", {"id": "carol", "approval": "OPEN"}),
        ("POST", "/api/agents", {"id": "carol", "version": 2}),
    ],
)
async def test_wrong_types_elsewhere(
    world: aiohttp.ClientSession, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await snapshot(world)
    await assert_error(await world.request(method, path, json=body), 400, "invalid_request")
    assert await snapshot(world) == before


@pytest.mark.parametrize(
    "query",
    [
        "for=bob&limit=0",
        "for=bob&limit=1001",
        "for=bob&limit=1e3",
        "for=bob&wait=61",
        "for=bob&wait=1.5",
        "for=bob&since=99999999999999999999999",
        "for=bob&thread=-1",
        "for=%00",
        "for=bob&channel=%00",
        "for=bob&order=random",
        "for=" + "x" * 2000,
    ],
)
async def test_bad_query_parameters(world: aiohttp.ClientSession, query: str) -> None:
    resp = await world.get(f"/api/messages?{query}")
    assert resp.status in (400, 404), await resp.text()
    await assert_error(resp, resp.status, "invalid_request" if resp.status == 400 else "not_found")


async def test_surrogate_escapes_in_the_url(world: aiohttp.ClientSession) -> None:
    for path in ("/api/agents/%ED%A0%80", "/api/messages?for=%ED%A0%80", "/api/agents?tag=%FF"):
        resp = await world.get(path)
        assert resp.status < 500, await resp.text()
        if resp.status >= 400:
            await assert_error(resp, resp.status, None)


async def test_huge_body_is_413(world: aiohttp.ClientSession) -> None:
    before = await snapshot(world)
    huge = json.dumps(message(body="x" * (2 * 1024 * 1024)))
    for method, path in BODY_ENDPOINTS:
        resp = await world.request(
            method, path, data=huge, headers={"Content-Type": "application/json"}
        )
        await assert_error(resp, 413, "payload_too_large")
    assert await snapshot(world) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/agents"),
        ("DELETE", "/api/agents"),
        ("POST", "/api/agents/bob"),
        ("GET", "/api/agents/bob/heartbeat"),
        ("PUT", "/api/messages"),
        ("POST", "/api/messages/1"),
        ("GET", "/api/messages/1/claim"),
        ("POST", "/api/stats"),
        ("DELETE", "/api/health"),
        ("POST", "/api/events"),
    ],
)
async def test_wrong_method_is_405_json(
    world: aiohttp.ClientSession, method: str, path: str
) -> None:
    before = await snapshot(world)
    resp = await world.request(method, path, json={"id": "x"})
    await assert_error(resp, 405, "method_not_allowed")
    assert "Allow" in resp.headers
    assert await snapshot(world) == before


@pytest.mark.parametrize(
    "path", ["/api/nope", "/api", "/api/", "/api/agents/bob/nope", "/api/messages/1/x/y"]
)
async def test_unknown_route_is_404_json(world: aiohttp.ClientSession, path: str) -> None:
    for method in ("GET", "POST"):
        await assert_error(await world.request(method, path), 404, "not_found")


# ------------------------------------------------------------------------------ auth


async def test_token_required_when_set(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(token=TOKEN)
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer "},
            {"X-Agent-Relay-Token": "wrong"},
            {"X-Agent-Relay-Token": TOKEN[:-1]},
        ):
            for method, path in (
                ("GET", "/api/agents"),
                ("POST", "/api/agents"),
                ("GET", "/api/events"),
                ("GET", "/api/health"),
                ("GET", "/api/nope"),
            ):
                resp = await http.request(method, path, headers=headers, json={"id": "sneaky"})
                await assert_error(resp, 401, "unauthorized")
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Agent-Relay-Token": TOKEN}):
            resp = await http.get("/api/agents", headers=headers)
            assert resp.status == 200
            assert await resp.json() == {"agents": []}, "the 401s changed nothing"
        dashboard = await http.get("/")
        assert dashboard.status == 200
        assert TOKEN not in await dashboard.text()


async def test_integration_token_scopes(relay_factory: Any) -> None:
    reader = Integration(name="reader", token="reader-token-1", scopes=frozenset({"agents:read"}))
    writer = Integration(
        name="writer",
        token="writer-token-1",
        scopes=frozenset({"messages:write", "messages:read", "events:read"}),
    )
    relay: Relay = await relay_factory(token=TOKEN, integrations=(reader, writer))
    admin = {"Authorization": f"Bearer {TOKEN}"}
    as_reader = {"Authorization": "Bearer reader-token-1"}
    as_writer = {"X-Agent-Relay-Token": "writer-token-1"}
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        assert (await http.post("/api/agents", json={"id": "bob"}, headers=admin)).status == 201
        before = await snapshot(http, admin)
        assert (await http.get("/api/agents", headers=as_reader)).status == 200
        assert (await http.get("/api/agents/bob", headers=as_reader)).status == 200
        for method, path, body in (
            ("POST", "/api/agents", {"id": "eve"}),
            ("DELETE", "/api/agents/bob", None),
            ("POST", "/api/messages", message()),
            ("GET", "/api/messages", None),
            ("GET", "/api/events", None),
            ("GET", "/api/stats", None),
        ):
            resp = await http.request(method, path, json=body, headers=as_reader)
            await assert_error(resp, 403, "forbidden")
        resp = await http.post("/api/agents", json={"id": "eve"}, headers=as_writer)
        await assert_error(resp, 403, "forbidden")
        assert await snapshot(http, admin) == before
        resp = await http.post("/api/messages", json=message(), headers=as_writer)
        assert resp.status == 201


async def test_cors_same_origin_by_default(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/api/health", headers={"Origin": "http://evil.example"})
    await assert_error(resp, 403, "forbidden")  # a foreign page may not even read
    assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = await http.options(
        "/api/messages",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    await assert_error(preflight, 403, "forbidden")


async def test_cors_with_listed_origins(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(cors_origins=("http://app.example",), token=TOKEN)
    allowed = {"Origin": "http://app.example"}
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        preflight = await http.options(
            "/api/messages",
            headers={
                **allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status in (200, 204)
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.example"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        ok = await http.get("/api/health", headers={**allowed, "Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        assert ok.headers["Access-Control-Allow-Origin"] == "http://app.example"
        denied = await http.get("/api/health", headers=allowed)
        assert denied.status == 401
        assert denied.headers.get("Access-Control-Allow-Origin") == "http://app.example", (
            "a browser client must be able to read the error"
        )
        other = await http.get(
            "/api/health",
            headers={"Origin": "http://other.example", "Authorization": f"Bearer {TOKEN}"},
        )
        assert "Access-Control-Allow-Origin" not in other.headers


async def test_cors_headers_on_event_streams(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(cors_origins=("http://app.example",))
    async with (
        aiohttp.ClientSession(base_url=relay.url) as http,
        http.get("/api/events", headers={"Origin": "http://app.example"}) as stream,
    ):
        assert stream.headers["Access-Control-Allow-Origin"] == "http://app.example"


async def test_cors_wildcard(relay_factory: Any) -> None:
    relay: Relay = await relay_factory(cors_origins=("*",))
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        resp = await http.get("/api/health", headers={"Origin": "http://anywhere.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send bytes no well-behaved client would, and parse the JSON answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    length = f"Content-Length: {len(body)}\r\n".encode()
    if body:
        length += b"Content-Type: application/json\r\n"
    writer.write(
        head + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + length + b"\r\n" + body
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    return int(status_line.split()[1]), payload


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe",
        b"X-Agent-Relay-Token: \xed\xa0\x80",
        b"Authorization: \xff",
    ],
)
async def test_undecodable_tokens_are_401(relay_factory: Any, header: bytes) -> None:
    reader = Integration(name="reader", token="reader-token-1", scopes=frozenset({"*"}))
    relay: Relay = await relay_factory(token=TOKEN, integrations=(reader,))
    status, payload = await raw_request(relay.url, b"GET /api/agents HTTP/1.1\r\n" + header)
    assert (status, payload["code"]) == (401, "unauthorized")


async def test_undecodable_idempotency_key_is_400(
    world: aiohttp.ClientSession, relay: Relay
) -> None:
    before = await snapshot(world)
    body = json.dumps(message()).encode()
    head = b"POST /api/messages HTTP/1.1\r\nIdempotency-Key: \xff\xfe"
    status, payload = await raw_request(relay.url, head, body)
    assert (status, payload["code"]) == (400, "invalid_request")
    assert await snapshot(world) == before
